import type { ColumnType, Generated, JSONColumnType } from "kysely";
import type { PhaseName } from "../domain/phases.js";
import type { CheckResult } from "../checks/check.js";

/** The JSON form of a MigrationSpec (protobuf JSON), kept as the caller gave it after defaults. */
export type SpecJson = Record<string, unknown>;

/** What the engine and checks record about a migration besides its phase. */
export interface MigrationStateJson {
  checks?: CheckResult[];
  /** When the current phase began (ISO time), for its deadline. */
  phaseEnteredAt?: string;
  /** The phase a rollback started from. */
  rollbackFrom?: PhaseName;
  /** The source's WAL position once fenced: what the target must replay before promotion. */
  finalLsn?: string;
  /** Databases whose changes on the promoted target replicate back to the source. */
  reverseDatabases?: string[];
  /** The source under its live load, captured before cutover; the target is held to it after. */
  baseline?: import("../checks/baseline.js").Baseline;
  /** Peak WAL generation rate (bytes/s) the replica kept up with while replicating. */
  peakWalRate?: number;
  /** Logical slots on record: positions, consumers, where they were recreated. */
  cdcSlots?: CdcSlotRecord[];
  /** Where CDC consumers are told to read, and since when. */
  cdc?: CdcStateJson;
  lastError?: { code: string; message: string; phase: PhaseName; at: string };
  /** Set while the failure policy HOLD keeps the migration in this phase for an operator. */
  held?: { phase: PhaseName; at: string };
  /** Step outputs, keyed by step name, so a resumed step knows what was done. */
  steps?: Record<string, unknown>;
}

export interface CdcSlotRecord {
  slotName: string;
  plugin: string;
  database: string;
  confirmedFlushLsn: string;
  restartLsn: string;
  active: boolean;
  consumer: string;
  publications: string[];
  recordedAt: string;
  targetConsistentLsn?: string;
  sourceResumeLsn?: string;
}

export type CdcStage = "ON_SOURCE" | "DRAINING" | "PAUSED" | "ON_TARGET";

export interface CdcStateJson {
  stage: CdcStage;
  /** When the stage began (ISO time). */
  since: string;
  /** DRAINING/PAUSED: the position consumers confirm before they stop. */
  drainToLsn?: string;
  /** ON_SOURCE after a rollback or a fallback: consumers resume there rather than just keep reading. */
  resumed?: boolean;
  /** When consumers were first told to pause in the current stretch. */
  pausedSince?: string;
  /** The instance whose slots consumers read (or drain) in this stage. */
  side: "source" | "target";
  endpoint?: { host: string; port: number };
  /** Set once the pause alert fired for the current stretch. */
  alerted?: boolean;
  /** The source's WAL position when its readers were ended at cutover: nobody saw anything past it. */
  readersEndedAt?: string;
}

export interface MigrationsTable {
  id: string;
  request_id: string | null;
  database_name: string;
  provider: string;
  /** provider + region + id of the source: one active migration per source. */
  source_key: string;
  target_key: string;
  spec: JSONColumnType<SpecJson>;
  phase: PhaseName;
  paused: Generated<boolean>;
  cutover_approved: Generated<boolean>;
  state: JSONColumnType<MigrationStateJson>;
  created_by: string;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  /** Bumped on every update; lets writers detect a concurrent change. */
  version: Generated<number>;
  requested_action: RequestedAction | null;
}

export type RequestedAction = "abort" | "rollback" | "finalize";

export interface ProxyStatusTable {
  node_id: string;
  database_name: string;
  replica_id: string;
  connected: boolean;
  acked_version: string | null;
  nacked_version: string | null;
  nack_message: string | null;
  last_seen: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface RoutesTable {
  database_name: string;
  listener_port: number;
  host: string;
  port: number;
  version: string;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface EventsTable {
  seq: Generated<string>;
  migration_id: string;
  type: string;
  actor: string;
  message: string;
  phase_from: PhaseName | null;
  phase_to: PhaseName | null;
  payload: JSONColumnType<Record<string, unknown>>;
  at: ColumnType<Date, Date | string | undefined, never>;
}

export interface LeasesTable {
  name: string;
  holder: string;
  /** Fencing token: increases on every change of holder. */
  token: string;
  expires_at: ColumnType<Date, Date | string, Date | string>;
}

export interface CdcWatchersTable {
  database_name: string;
  slot_name: string;
  consumer_id: string;
  replica_id: string;
  last_seen: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface Database {
  cdc_watchers: CdcWatchersTable;
  migrations: MigrationsTable;
  events: EventsTable;
  leases: LeasesTable;
  routes: RoutesTable;
  proxy_status: ProxyStatusTable;
}
