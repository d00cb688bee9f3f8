import type { CheckResult } from "../domain/check.js";
import type { PhaseName } from "../domain/phases.js";
import type { ResolvedSpec } from "../domain/spec.js";
import type { Baseline, MigrationStateJson } from "../domain/state.js";
import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import type { CdcContext } from "../cdc/coordinator.js";
import type { CompareReport } from "../checks/data-compare.js";
import type { GuardrailBlocker } from "../checks/guardrails.js";
import type { TableDrift } from "../checks/schema-drift.js";
import type { SchemaInventory } from "../checks/schema-inventory.js";
import type { LargeObjectSync } from "../replication/large-objects.js";
import type { CapturedDdl } from "../replication/ddl-capture.js";
import type { ReversePublication } from "../replication/reverse.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import type { Router } from "../routing/router.js";
import type { MigrationRow } from "../store/migration-repo.js";

/**
 * The work steps delegate, behind types (the activities of a Temporal
 * workflow): CDC coordination, reverse replication and the probes that sample
 * an instance. Each runs its SQL through the provider's SQL port. Tests give
 * the engine fakes of these with a fake provider and router.
 */
export interface Activities {
  cdc: {
    /** Records the source's logical slots and their readers, touching nothing. */
    inventory(ctx: CdcContext): Promise<number>;
    /** With the source fenced: streams handed over at the final LSN, positions recorded; returns the step's reason. */
    drainAndPause(ctx: CdcContext, finalLsn: string, remainingMs: number): Promise<string>;
    /** After promotion: slots recreated on the target, consumers resume there; returns the step's reason. */
    restoreOnTarget(ctx: CdcContext): Promise<string>;
    /** Readers seen back on the new side (closing the pause) and WAL the kept source slots hold; true if the state changed. */
    observeReaders(ctx: CdcContext): Promise<boolean>;
    /** At finalize: the source slots kept for a rollback are dropped. */
    releaseSourceSlots(ctx: CdcContext): Promise<void>;
    /** At rollback: target streams handed over, source slots moved past what their consumers read; a WARN if a position is uncertain. */
    rollbackSlots(ctx: CdcContext, remainingMs: number): Promise<CheckResult | undefined>;
    /** Before a fallback unfences the source: slots moved to what their consumers had been sent. */
    settleOnSource(ctx: CdcContext): Promise<void>;
    /** Consumers told to read the source again; with `watch`, their pause lasts until readers are seen there. */
    resumeOnSource(ctx: CdcContext, opts?: { watch?: boolean }): Promise<void>;
    /** Stops watching for readers (the phase that watched ends): the pause recorded as it stands. */
    closeReaderWatch(ctx: CdcContext): void;
  };
  schema: {
    /** What each database holds that a switch forward and back treat apart (keyless, unlogged, large objects…). */
    inventory(provider: Provider, ref: InstanceRef): Promise<SchemaInventory>;
    /** What a fence now would cut short on the instance: long or idle transactions, DDL, prepared transactions. */
    guardrails(provider: Provider, ref: InstanceRef, maxTransactionAgeMs: number): Promise<GuardrailBlocker[]>;
    /** Tables whose shape differs between the two sides, in these databases. */
    drift(provider: Provider, source: InstanceRef, target: InstanceRef, databases: string[]): Promise<TableDrift[]>;
    /** After promotion: the target records the DDL statements it runs (removed with reverse replication). */
    captureDdl(provider: Provider, target: InstanceRef, databases: string[]): Promise<void>;
    /** The DDL statements the target recorded, oldest first. */
    capturedDdl(provider: Provider, target: InstanceRef, databases: string[]): Promise<CapturedDdl[]>;
  };
  reverse: {
    /** Before the fence: publications on the source, from its inventory; returns what each database publishes. */
    prepare(
      provider: Provider,
      source: InstanceRef,
      inventory: SchemaInventory,
      identityFull: readonly string[],
    ): Promise<ReversePublication[]>;
    /** Before a rollback fences the target: tables made on both sides since the publications were, added and copied; returns them. */
    coverNewTables(
      provider: Provider,
      source: InstanceRef,
      target: InstanceRef,
      databases: string[],
      timeoutMs: number,
    ): Promise<string[]>;
    /** With the target fenced and drained: the source's large objects made the target's. */
    carryLargeObjects(
      provider: Provider,
      source: InstanceRef,
      target: InstanceRef,
      databases: string[],
    ): Promise<LargeObjectSync>;
    /** Before the fence: the source connects to the replica as reverse replication will; the error, or undefined. */
    probe(
      provider: Provider,
      source: InstanceRef,
      target: InstanceRef,
      databases: string[],
    ): Promise<string | undefined>;
    /** After promotion, before traffic: the slots that keep the target's changes for the source. */
    reserve(provider: Provider, target: InstanceRef, databases: string[]): Promise<void>;
    /** After routing (or when a rollback begins): the source subscribes to the target, on the reserved slots. */
    start(provider: Provider, source: InstanceRef, target: InstanceRef, databases: string[]): Promise<void>;
    /** Before the target is fenced: the source commits what it applies synchronously, so that the drain sees it at once. */
    flushCommits(provider: Provider, source: InstanceRef, databases: string[]): Promise<void>;
    /** With the target fenced: the source applies everything it wrote, sequences carried over. */
    drain(provider: Provider, source: InstanceRef, target: InstanceRef, timeoutMs: number): Promise<void>;
    stop(provider: Provider, source: InstanceRef, target: InstanceRef): Promise<void>;
    /** The backlog the source has not applied and the WAL the target retains for it. */
    backlog(
      provider: Provider,
      target: InstanceRef,
    ): Promise<{ lagBytes: bigint; retainedBytes: bigint; targetLsn: string; slots: number }>;
  };
  verify: {
    /** Before the fence: the sessions a later hold() under key takes its snapshots on, opened now (idle). */
    open(provider: Provider, source: InstanceRef, target: InstanceRef, databases: string[], key: string): Promise<void>;
    /** Both sides' databases as they are now, held (in this process) for a later comparison under key. */
    hold(provider: Provider, source: InstanceRef, target: InstanceRef, databases: string[], key: string): Promise<void>;
    /** Every table compared by checksum in key ranges, from the snapshots held under key (released after); undefined when none are held. */
    compareHeld(key: string, databases: string[], signal: AbortSignal): Promise<CompareReport | undefined>;
  };
  probes: {
    baseline(provider: Provider, ref: InstanceRef, sampleMs: number): Promise<Baseline>;
    targetWritable(provider: Provider, ref: InstanceRef): Promise<CheckResult>;
  };
}

/** What a step may use: every side effect goes through provider, router or activities; state through report/note. */
export interface StepEnv {
  row: MigrationRow;
  spec: MigrationSpec;
  policy: ResolvedSpec;
  provider: Provider;
  router: Router;
  activities: Activities;
  source: InstanceRef;
  target: InstanceRef;
  /** Aborted when this replica loses the lease or stops. */
  signal: AbortSignal;
  /** Milliseconds left before the phase's deadline. */
  remainingMs: number;
  /** How long each baseline sample lasts (the service's --baseline-sample-ms). */
  baselineSampleMs: number;
  /** The state as the step leaves it; persisted with the step's outcome. */
  state: MigrationStateJson;
  /** Persists state and logs a check result, mid-step. */
  report(result: CheckResult): Promise<void>;
  /** Whether an operator asked for something that should interrupt a long wait. */
  interrupted(): Promise<boolean>;
  /** Persists state mid-step with a CDC event (consumers watching their directives hear of it at once). */
  note(message: string): Promise<void>;
  /** Persists state mid-step without an event: live figures (lag samples) that GetMigration and the metrics show. */
  save(): Promise<void>;
  /** Runs a part of the step (fence, promote, route…) as a child span of the step's attempt. */
  trace<T>(name: string, fn: () => Promise<T>, attrs?: Record<string, string | number | boolean>): Promise<T>;
}

export function cdcContext(
  env: Pick<StepEnv, "provider" | "source" | "target" | "spec" | "state" | "note" | "signal">,
): CdcContext {
  return {
    provider: env.provider,
    source: env.source,
    target: env.target,
    spec: env.spec,
    state: env.state,
    note: env.note,
    signal: env.signal,
  };
}

/** Done, go to `to`; or not yet, come back in waitMs. */
export type Outcome = { to: PhaseName; reason: string } | { waitMs: number };

export type Step = (env: StepEnv) => Promise<Outcome>;
