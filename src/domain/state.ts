/**
 * What a migration records besides its phase: the shapes the engine, checks
 * and CDC steps read and write, persisted by the store as JSON.
 */
import type { CheckResult } from "./check.js";
import type { PhaseName } from "./phases.js";

/** The JSON form of a MigrationSpec (protobuf JSON), kept as the caller gave it after defaults. */
export type SpecJson = Record<string, unknown>;

/** What the engine and checks record about a migration besides its phase. */
export interface MigrationStateJson {
  checks?: CheckResult[];
  /** When the current phase began (ISO time), for its deadline. */
  phaseEnteredAt?: string;
  /** The phase a rollback started from. */
  rollbackFrom?: PhaseName;
  /** Set once a rollback has ended reverse replication: a resumed rollback does not look for it again. */
  rollbackReverseEnded?: boolean;
  /** Whether the target had left recovery when a rollback from PROMOTING began (decided once: the step may run again after the replica is gone). */
  rollbackPromoted?: boolean;
  /** The source's WAL position once fenced: what the target must replay before promotion. */
  finalLsn?: string;
  /** Databases whose changes on the promoted target replicate back to the source. */
  reverseDatabases?: string[];
  /** Tables ("database.schema.table") reverse replication carries inserts of only: no replica identity. */
  insertOnlyTables?: string[];
  /** When source and target were compared table by table: after cutover, after a rollback (ISO times). */
  dataVerified?: { cutover?: string; rollback?: string };
  /** When the source last reached the target as reverse replication will (ISO time); unset until it has. */
  reversePathAt?: string;
  /** The source under its live load, captured before cutover; the target is held to it after. */
  baseline?: Baseline;
  /** Peak WAL generation rate (bytes/s) the replica kept up with while replicating. */
  peakWalRate?: number;
  /** Logical slots on record: positions, consumers, where they were recreated. */
  /** The CDC hand-over done at a final LSN, and what it said: CDC_PREPARE, after FINAL_SYNC did it, opens no connection. */
  cdcHandOver?: { lsn: string; reason: string };
  cdcSlots?: CdcSlotRecord[];
  /** Where CDC consumers are told to read, and since when. */
  cdc?: CdcStateJson;
  lastError?: { code: string; message: string; phase: PhaseName; at: string };
  /** Set while the failure policy HOLD keeps the migration in this phase for an operator. */
  held?: { phase: PhaseName; at: string };
  /**
   * Set when the failure policy failed the migration but removing what it
   * created has not succeeded yet: the migration stays in its phase, retrying
   * the cleanup, and becomes FAILED only once it is done.
   */
  failing?: { reason: string; since: string };
  /** Reverse replication as last sampled, from promotion until finalize. */
  reverse?: ReverseStatusJson;
  /** The physical replica as the lag gate last sampled it. */
  replication?: ReplicationSampleJson;
  /** The last cutover's window. */
  cutover?: CutoverTimingJson;
  /** The last rollback's timing (ROLLING_BACK, entered to left), with its parts. */
  rollback?: CutoverTimingJson;
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
  /** What the consumer had been sent on the side it left (the cutover's or the rollback's hand-over): it need not see anything before it again. */
  receivedLsn?: string;
  /** When its stream on the side it left ended, and when a reader was first seen on the side it moved to. */
  streamStoppedAt?: string;
  streamResumedAt?: string;
  /** WAL the slot kept on the source holds back there (bytes, as text), until finalize releases it. */
  retainedWalBytes?: string;
  /** At rollback: what the consumer had read on the target (sent to it, or confirmed if it was not connected). */
  readOnTargetLsn?: string;
  /** At rollback: the target's transactions it had not read, which it streams from the source (reverse replication applied them there). */
  toStreamFromSource?: number;
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
  /** Consumers were moved but not all were seen reading on the new side yet: their pause goes on. */
  awaitingReaders?: boolean;
  /**
   * The promoted target's WAL positions do not continue the source's (Aurora's need not): positions of one side mean
   * nothing on the other, so consumers re-anchor at the position their directive gives instead of their own.
   */
  lsnDiscontinuous?: boolean;
}

export type RequestedAction = "abort" | "rollback" | "finalize";

/** What the database looked like under its live load, sampled over a short interval. */
export interface Baseline {
  /** Write transactions per second, all databases (by transaction ids taken). */
  commitsPerSec: number;
  /** Rolled-back transactions per second, all databases. */
  rollbacksPerSec: number;
  /** Client connections. */
  connections: number;
  /** Latency of a minimal committing transaction, ms. */
  commitP50Ms: number;
  commitP99Ms: number;
  sampledMs: number;
}

/** The cutover's window as the engine measured it: from entering QUIESCING (the fence) to leaving ROUTING (every ACK). */
export interface CutoverTimingJson {
  startedAt: string;
  endedAt?: string;
  windowMs?: number;
  /** ROUTED, FELL_BACK (a failure before promotion returned to the source) or the phase it left to. */
  outcome?: string;
  /** The window's parts as the engine timed them, in the order they started. */
  parts?: CutoverPartJson[];
}

/** One timed part of a cutover: the fence, the final LSN read, the replay wait, the promotion, the route's ACKs… */
export interface CutoverPartJson {
  name: string;
  /** The phase it ran in. */
  phase: PhaseName;
  /** From the window's start to the part's. */
  startMs: number;
  ms: number;
  /** Set when the part failed. */
  failed?: boolean;
}

/** The physical replica's lag and the source's WAL rate at one sample of the lag gate. */
export interface ReplicationSampleJson {
  state: string;
  /** Null when unknown (the replica not connected). */
  lagBytes: number | null;
  lagSeconds: number | null;
  walBytesPerSec: number;
  sampledAt: string;
  /** How long the current clean window has held; absent while lag is over a threshold. */
  windowHeldMs?: number;
}

/** One sample of reverse replication's backlog, with the apply rate measured since the previous one. */
export interface ReverseStatusJson {
  /** Bytes of the target's WAL the source has not applied (as text: a bigint). */
  lagBytes: string;
  /** WAL the target retains for reverse replication. */
  retainedBytes: string;
  /** The target's WAL position at the sample. */
  targetLsn: string;
  /** Bytes per second the source applied, smoothed over samples; undefined until two samples exist. */
  applyBytesPerSec?: number;
  sampledAt: string;
  /** Set when the rollback policy dropped reverse replication: a lossless rollback is no longer possible. */
  stoppedReason?: string;
}

const pausedStage = (stage: CdcStage | undefined) => stage === "DRAINING" || stage === "PAUSED";

/** Whether consumers in this stage are told to stop reading. */
export function isPausedStage(stage: CdcStage | undefined): boolean {
  return pausedStage(stage);
}

/** Since when the migration's CDC consumers are paused; undefined while they read. */
export function pausedSince(state: MigrationStateJson): Date | undefined {
  const paused = pausedStage(state.cdc?.stage) || state.cdc?.awaitingReaders;
  return state.cdc?.pausedSince && paused ? new Date(state.cdc.pausedSince) : undefined;
}
