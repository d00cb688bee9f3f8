import type { ColumnType, Generated, JSONColumnType } from "kysely";
import type { PhaseName } from "../domain/phases.js";
import type { MigrationStateJson, RequestedAction, SpecJson } from "../domain/state.js";

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

export interface ProxyStatusTable {
  /** The proxy's certificate identity ("" over cleartext): ACKs are kept per identity and node. */
  identity: Generated<string>;
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

export interface InstanceClaimsTable {
  /** provider + region + id of an instance. */
  instance_key: string;
  migration_id: string;
  role: "source" | "target";
}

export interface DatabasesTable {
  name: string;
  provider: string;
  instances: JSONColumnType<{ id: string; region: string }[]>;
  team: string;
  labels: JSONColumnType<Record<string, string>>;
  registered_by: string;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface DatabaseInstancesTable {
  /** provider + region (the default filled in) + id. */
  instance_key: string;
  database_name: string;
}

export interface CampaignsTable {
  id: string;
  request_id: string | null;
  name: string;
  spec: JSONColumnType<object>;
  state: "RUNNING" | "PAUSED" | "COMPLETED" | "CANCELLED";
  pause_reason: Generated<string>;
  /** Identities that approved each wave, by wave index. */
  approvals: JSONColumnType<Record<string, string[]>>;
  failures_seen: Generated<number>;
  rollbacks_seen: Generated<number>;
  /** The owning teams of its databases, for authorization and notification. */
  teams: JSONColumnType<string[]>;
  created_by: string;
  created_at: ColumnType<Date, Date | string | undefined, never>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface CampaignItemsTable {
  campaign_id: string;
  database_name: string;
  /** Its place in the campaign's order. */
  ord: number;
  wave: number;
  team: string;
  /** The migration spec it will be created with, fixed when the campaign is. */
  spec: JSONColumnType<SpecJson>;
  migration_id: string | null;
  /** While its campaign runs or is paused: a database is in one such campaign at most. */
  active: Generated<boolean>;
}

export interface CampaignEventsTable {
  seq: Generated<string>;
  campaign_id: string;
  type: string;
  actor: string;
  message: string;
  payload: JSONColumnType<Record<string, unknown>>;
  at: ColumnType<Date, Date | string | undefined, never>;
}

export interface NotificationsTable {
  id: Generated<string>;
  source: "migration" | "campaign";
  event_seq: string;
  /** A digest of the webhook's URL: a Slack URL is itself a secret, so the store never holds it. */
  hook_key: string;
  team: string;
  kind: string;
  migration_id: string | null;
  campaign_id: string | null;
  notice: JSONColumnType<Record<string, unknown>>;
  status: Generated<"pending" | "delivered" | "failed">;
  attempts: Generated<number>;
  next_at: ColumnType<Date, Date | string | undefined, Date | string>;
  last_error: string | null;
  done_at: ColumnType<Date | null, Date | string | undefined, Date | string | null>;
  /** Whether its outcome is in the migration's or campaign's event log yet. */
  recorded: Generated<boolean>;
  created_at: ColumnType<Date, Date | string | undefined, never>;
}

export interface NotifierCursorsTable {
  source: string;
  seq: string;
}

export interface Database {
  notifications: NotificationsTable;
  notifier_cursors: NotifierCursorsTable;
  campaigns: CampaignsTable;
  campaign_items: CampaignItemsTable;
  campaign_events: CampaignEventsTable;
  databases: DatabasesTable;
  database_instances: DatabaseInstancesTable;
  instance_claims: InstanceClaimsTable;
  cdc_watchers: CdcWatchersTable;
  migrations: MigrationsTable;
  events: EventsTable;
  leases: LeasesTable;
  routes: RoutesTable;
  proxy_status: ProxyStatusTable;
}
