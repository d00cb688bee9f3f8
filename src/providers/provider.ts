import type { CheckResult } from "../domain/check.js";
import type { Lsn } from "../domain/lsn.js";
import type { PeerConnection, SqlPort } from "./sql.js";

import type { Endpoint, InstanceRef } from "../domain/instance.js";
import type { Retirement } from "../domain/spec.js";
import type { StorageFigures } from "../domain/storage.js";

export type { Endpoint, InstanceRef };

export interface SlotInfo {
  name: string;
  type: "physical" | "logical";
  plugin: string | null;
  database: string | null;
  active: boolean;
  restartLsn: Lsn | null;
  confirmedFlushLsn: Lsn | null;
  /** WAL this slot keeps from being removed: bytes from its restart_lsn to the current position. */
  retainedBytes: bigint;
}

export interface ExtensionInfo {
  name: string;
  version: string;
  database: string;
}

export interface InstanceDescription {
  ref: InstanceRef;
  /** server_version_num, e.g. 150018. */
  versionNum: number;
  major: number;
  /** Sum of the sizes of all databases. */
  sizeBytes: bigint;
  databases: string[];
  /** Every setting from pg_settings, by name. */
  settings: Record<string, string>;
  /** Installed in each database. */
  extensions: ExtensionInfo[];
  slots: SlotInfo[];
  inRecovery: boolean;
  currentLsn: Lsn;
}

export type ReplicationState = "streaming" | "catchup" | "starting" | "stopped";

export interface ReplicationStatus {
  state: ReplicationState;
  /** Whether the target's server is up at all. */
  targetRunning: boolean;
  sourceLsn: Lsn;
  replayLsn: Lsn | null;
  lagBytes: bigint | null;
  lagSeconds: number | null;
  /** What the platform's own monitoring says of it, for the record (AWS: CloudWatch, when configured). */
  platform?: string;
}

/**
 * What the engine drives, the same for every provider. Every operation is
 * idempotent: called twice (a retry, a resumed step), it does the work once.
 */
export interface Provider {
  readonly kind: "local" | "aws";
  describe(ref: InstanceRef): Promise<InstanceDescription>;
  /** The major version a replica of this source would run. */
  replicaMajor(source: InstanceRef): Promise<number>;
  /** Extensions (name -> versions) a target made from this source could run. */
  targetExtensions(source: InstanceRef): Promise<Map<string, string[]>>;
  /** Drops a replication slot that no consumer is reading; refuses an active one. Returns the WAL it retained. */
  dropInactiveSlot(ref: InstanceRef, slot: string): Promise<bigint>;
  /** Checks only this platform can make of a source before anything is created (versions, parameter groups, the fence). */
  platformChecks(source: InstanceRef, target: InstanceRef, database: string): Promise<CheckResult[]>;
  /** Whether an instance of that name exists (of ours or not): a migration's target must not. */
  exists(ref: InstanceRef): Promise<boolean>;
  /**
   * Creates the target as a physical replica of the source from a storage
   * snapshot, replaying the source's WAL, marked as owned by `owner` (the
   * migration id) before anything else is done. Resumes a target that
   * `owner` began; refuses one that exists and is not marked as its own.
   */
  createReplica(source: InstanceRef, target: InstanceRef, owner: string): Promise<void>;
  replicationStatus(source: InstanceRef, target: InstanceRef): Promise<ReplicationStatus>;
  /** The instance's storage now (free, total, WAL), or undefined where the platform does not say (AWS without CloudWatch). */
  storage(ref: InstanceRef): Promise<StorageFigures | undefined>;
  /** Bytes of WAL the instance writes per second, sampled over sampleMs. */
  walGenerationRate(ref: InstanceRef, sampleMs: number): Promise<number>;
  currentLsn(ref: InstanceRef): Promise<Lsn>;
  /** Blocks new client connections and ends client sessions; replication and our admin access stay. */
  fence(ref: InstanceRef): Promise<void>;
  unfence(ref: InstanceRef): Promise<void>;
  isFenced(ref: InstanceRef): Promise<boolean>;
  /**
   * A fenced instance's WAL position and, in the same look, the client sessions pgshift did not open (described):
   * one found there got past the fence.
   */
  fencedPosition(ref: InstanceRef): Promise<{ lsn: Lsn; intruders: string[] }>;
  /** The client sessions on an instance that pgshift did not open, described. */
  intruders(ref: InstanceRef): Promise<string[]>;
  /** Resolves once the target replayed up to lsn; rejects after timeoutMs. */
  waitForReplay(target: InstanceRef, lsn: Lsn, timeoutMs: number): Promise<void>;
  /** Makes the replica a writable primary. */
  promote(source: InstanceRef, target: InstanceRef): Promise<void>;
  /** After promotion, off the cutover path: releases what the source kept for the replica (its slot). */
  detachReplica(source: InstanceRef, target: InstanceRef): Promise<void>;
  endpoint(ref: InstanceRef): Promise<Endpoint>;
  /**
   * Removes a target that `owner` created, and what the source keeps for it.
   * Anything not marked as `owner`'s is left as it is ("not-ours").
   */
  deleteReplica(source: InstanceRef, target: InstanceRef, owner: string): Promise<"deleted" | "absent" | "not-ours">;
  /**
   * Takes the old source out of service once the migration is finalized: stopped, or deleted where the spec says
   * so, after a final snapshot named `snapshot` where the platform takes snapshots. Returns what was done, in words.
   */
  retire(ref: InstanceRef, how: Retirement, snapshot: string): Promise<string>;
  /**
   * Keeps a retired source retired: one the platform started again by itself (AWS does after 7 days) is stopped
   * again. Returns what it found and did, or undefined when it was as left.
   */
  keepRetired(ref: InstanceRef): Promise<string | undefined>;
  /** SQL as the instance's admin, in a database ("postgres" by default): checks, CDC and reverse replication run through it. */
  sql(ref: InstanceRef, database?: string): SqlPort;
  /** How another server (the source, for reverse replication) connects to this instance's database. */
  peerConnection(ref: InstanceRef, database: string): Promise<PeerConnection>;
}
