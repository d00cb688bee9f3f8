import { create, toJson, fromJson } from "@bufbuild/protobuf";
import { durationFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import { InvalidArgumentError } from "./errors.js";
import {
  AwsOptionsSchema,
  CdcMode,
  CutoverMode,
  FailurePolicy,
  FenceMode,
  MigrationSpecSchema,
  Provider,
  RollbackExceededAction,
  SourceRetirement,
  type DatabaseRef,
  type MigrationSpec,
} from "../gen/migration/v1/migration_pb.js";
import type { InstanceRef } from "./instance.js";
import type { SpecJson } from "./state.js";
import { isPhaseName, type PhaseName } from "./phases.js";
import { FORWARD } from "./transitions.js";

export const DATABASE_NAME = /^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$/;
const LOCAL_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
// RDS identifiers: a letter first, letters, digits and single hyphens, no trailing hyphen, 1 to 63.
const AWS_ID = /^[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,62}$/;
const AWS_REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
// A DB cluster parameter group name: a letter first, letters, digits, hyphens and dots (default.aurora-postgresql15), up to 255.
const AWS_PARAMETER_GROUP = /^[A-Za-z][A-Za-z0-9.-]{0,254}$/;
const AWS_INSTANCE_CLASS = /^db\.[a-z0-9]+\.[a-z0-9]+$/;

/** The one place defaults live; a stored spec carries them filled in. */
export const DEFAULTS = {
  maxLagBytes: 16n * 1024n * 1024n,
  storageWarnFraction: 0.2,
  storageHoldFraction: 0.1,
  maxLagMs: 5_000,
  windowMs: 60_000,
  drainTimeoutMs: 2_000,
  pauseAlertAfterMs: 300_000,
  maxAttempts: 5,
  initialBackoffMs: 1_000,
  maxBackoffMs: 30_000,
  maxReverseLagBytes: 256n * 1024n * 1024n,
  maxTargetRetainedBytes: 4n * 1024n * 1024n * 1024n,
  fenceBelowLagBytes: 16n * 1024n * 1024n,
  fenceWaitMs: 5 * 60_000,
  guardrailMaxTransactionAgeMs: 5_000,
  guardrailMaxWaitMs: 30_000,
} as const;

/**
 * Default deadlines per phase (ms); a spec's step_policy.phase_deadlines
 * overrides them. Absent: the phase has none.
 */
export const DEFAULT_PHASE_DEADLINES: Partial<Record<PhaseName, number>> = {
  PREFLIGHT: 5 * 60_000,
  PROVISIONING: 2 * 3600_000,
  REPLICATING: 24 * 3600_000,
  QUIESCING: 2 * 60_000,
  FINAL_SYNC: 2 * 60_000,
  CDC_PREPARE: 5 * 60_000,
  PROMOTING: 5 * 60_000,
  CDC_RESTORE: 5 * 60_000,
  ROUTING: 2 * 60_000,
  VERIFYING: 10 * 60_000,
};

const MAX_WINDOW_MS = 24 * 3600_000;

export function durationMs(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

function checkDuration(field: string, d: Duration | undefined, fallbackMs: number, maxMs: number): Duration {
  const ms = durationMs(d);
  if (ms === undefined) return durationFromMs(fallbackMs);
  if (ms <= 0 || ms > maxMs) {
    throw new InvalidArgumentError(`${field} must be greater than 0 and at most ${maxMs / 1000}s; got ${ms / 1000}s`);
  }
  return durationFromMs(ms);
}

export function checkRef(field: string, ref: DatabaseRef | undefined, provider: Provider): DatabaseRef {
  if (!ref || !ref.id)
    throw new InvalidArgumentError(
      `${field}.id is required: the ${field === "spec.source" ? "source instance" : "target to create"}'s identifier`,
    );
  if (provider === Provider.AWS) {
    if (!AWS_ID.test(ref.id) || ref.id.endsWith("-")) {
      throw new InvalidArgumentError(
        `${field}.id "${ref.id}" is not a valid RDS identifier: 1 to 63 letters, digits or hyphens, starting with a letter, no two hyphens in a row, not ending with a hyphen`,
      );
    }
    if (ref.region && !AWS_REGION.test(ref.region)) {
      throw new InvalidArgumentError(`${field}.region "${ref.region}" is not an AWS region name such as eu-west-1`);
    }
  } else {
    if (!LOCAL_ID.test(ref.id)) {
      throw new InvalidArgumentError(
        `${field}.id "${ref.id}" is not a valid local cluster name: 1 to 63 letters, digits, "_" or "-", starting with a letter or digit`,
      );
    }
    if (ref.region)
      throw new InvalidArgumentError(`${field}.region is only for PROVIDER_AWS; leave it empty for PROVIDER_LOCAL`);
  }
  return ref;
}

/**
 * Validates a spec and fills in defaults. The result is what gets stored, so
 * that a migration keeps behaving the same if the defaults change later.
 */
export function normalizeSpec(spec: MigrationSpec | undefined): MigrationSpec {
  if (!spec) throw new InvalidArgumentError("spec is required");
  if (!DATABASE_NAME.test(spec.databaseName)) {
    throw new InvalidArgumentError(
      `spec.database_name "${spec.databaseName}" is not valid: use 1 to 63 lowercase letters, digits and dashes, starting with a letter (e.g. "billing-db")`,
    );
  }
  if (spec.provider !== Provider.LOCAL && spec.provider !== Provider.AWS) {
    throw new InvalidArgumentError("spec.provider is required: PROVIDER_LOCAL or PROVIDER_AWS");
  }
  const source = checkRef("spec.source", spec.source, spec.provider);
  const target = checkRef("spec.target", spec.target, spec.provider);
  if (source.id === target.id && source.region === target.region) {
    throw new InvalidArgumentError(
      `spec.target.id must differ from spec.source.id ("${source.id}"): the target is a new instance`,
    );
  }
  const lag = spec.lagPolicy;
  const maxLagBytes = lag?.maxLagBytes ? lag.maxLagBytes : DEFAULTS.maxLagBytes;
  const cdc = spec.cdcPolicy;
  if (cdc && !(cdc.mode in CdcMode))
    throw new InvalidArgumentError(`spec.cdc_policy.mode ${cdc.mode} is not a CdcMode`);
  if (!(spec.cutoverMode in CutoverMode))
    throw new InvalidArgumentError(`spec.cutover_mode ${spec.cutoverMode} is not a CutoverMode`);
  if (!(spec.failurePolicy in FailurePolicy))
    throw new InvalidArgumentError(`spec.failure_policy ${spec.failurePolicy} is not a FailurePolicy`);
  if (!(spec.sourceRetirement in SourceRetirement)) {
    throw new InvalidArgumentError(`spec.source_retirement ${spec.sourceRetirement} is not a SourceRetirement`);
  }
  return create(MigrationSpecSchema, {
    ...normalizeFence(spec),
    databaseName: spec.databaseName,
    provider: spec.provider,
    source: { id: source.id, region: source.region },
    target: { id: target.id, region: target.region },
    cutoverMode: spec.cutoverMode === CutoverMode.UNSPECIFIED ? CutoverMode.MANUAL : spec.cutoverMode,
    lagPolicy: {
      maxLagBytes,
      maxLagTime: checkDuration("spec.lag_policy.max_lag_time", lag?.maxLagTime, DEFAULTS.maxLagMs, 3600_000),
      window: checkDuration("spec.lag_policy.window", lag?.window, DEFAULTS.windowMs, MAX_WINDOW_MS),
    },
    cdcPolicy: {
      mode: !cdc || cdc.mode === CdcMode.UNSPECIFIED ? CdcMode.COORDINATE : cdc.mode,
      drainTimeout: checkDuration(
        "spec.cdc_policy.drain_timeout",
        cdc?.drainTimeout,
        DEFAULTS.drainTimeoutMs,
        3600_000,
      ),
      pauseAlertAfter: checkDuration(
        "spec.cdc_policy.pause_alert_after",
        cdc?.pauseAlertAfter,
        DEFAULTS.pauseAlertAfterMs,
        MAX_WINDOW_MS,
      ),
    },
    failurePolicy: spec.failurePolicy === FailurePolicy.UNSPECIFIED ? FailurePolicy.ROLLBACK : spec.failurePolicy,
    stepPolicy: normalizeStepPolicy(spec),
    rollbackPolicy: normalizeRollbackPolicy(spec),
    schemaPolicy: {
      disposableUnloggedTables: normalizeTableNames(
        "disposable_unlogged_tables",
        spec.schemaPolicy?.disposableUnloggedTables ?? [],
      ),
      replicaIdentityFullTables: normalizeTableNames(
        "replica_identity_full_tables",
        spec.schemaPolicy?.replicaIdentityFullTables ?? [],
      ),
    },
    guardrails: {
      maxTransactionAge: checkDuration(
        "spec.guardrails.max_transaction_age",
        spec.guardrails?.maxTransactionAge,
        DEFAULTS.guardrailMaxTransactionAgeMs,
        3600_000,
      ),
      maxWait: checkDuration(
        "spec.guardrails.max_wait",
        spec.guardrails?.maxWait,
        DEFAULTS.guardrailMaxWaitMs,
        3600_000,
      ),
    },
    sourceRetirement:
      spec.sourceRetirement === SourceRetirement.UNSPECIFIED ? SourceRetirement.STOP : spec.sourceRetirement,
    storageGuard: normalizeStorageGuard(spec),
  });
}

function normalizeStorageGuard(spec: MigrationSpec) {
  const warn = spec.storageGuard?.warnBelowFreeFraction || DEFAULTS.storageWarnFraction;
  const hold = spec.storageGuard?.holdBelowFreeFraction || DEFAULTS.storageHoldFraction;
  for (const [field, v] of [
    ["warn_below_free_fraction", warn],
    ["hold_below_free_fraction", hold],
  ] as const) {
    if (!(v > 0 && v < 1))
      throw new InvalidArgumentError(
        `spec.storage_guard.${field} must be between 0 and 1 (a fraction of the storage); got ${v}`,
      );
  }
  if (hold > warn) {
    throw new InvalidArgumentError(
      `spec.storage_guard.hold_below_free_fraction (${hold}) must be at most warn_below_free_fraction (${warn}): the warning comes first`,
    );
  }
  return { warnBelowFreeFraction: warn, holdBelowFreeFraction: hold };
}

/** How a migration's finalize retires its source, as providers take it. */
export type Retirement = "stop" | "delete";

export function retirementOf(spec: MigrationSpec): Retirement {
  return spec.sourceRetirement === SourceRetirement.DELETE ? "delete" : "stop";
}

// An identifier as PostgreSQL prints it unquoted, or double-quoted; two or three of them joined by dots.
const IDENT = String.raw`(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")`;
const TABLE_NAME = new RegExp(`^${IDENT}\\.${IDENT}(?:\\.${IDENT})?$`);

/** Table names a spec lists: "schema.table" or "database.schema.table", each once. */
function normalizeTableNames(field: string, names: string[]): string[] {
  if (names.length > 1000)
    throw new InvalidArgumentError(`spec.schema_policy.${field} lists ${names.length} tables; at most 1000`);
  for (const n of names) {
    if (!TABLE_NAME.test(n)) {
      throw new InvalidArgumentError(
        `spec.schema_policy.${field} has "${n.slice(0, 80)}", which is not "schema.table" or "database.schema.table" (quote names that need it, as PostgreSQL prints them)`,
      );
    }
  }
  return [...new Set(names)];
}

/** The fence mode (local: filled in; AWS: unset means the service's --aws-fence) and the AWS options, checked against the provider. */
function normalizeFence(spec: MigrationSpec): Pick<MigrationSpec, "fenceMode" | "aws"> {
  if (!(spec.fenceMode in FenceMode))
    throw new InvalidArgumentError(`spec.fence_mode ${spec.fenceMode} is not a FenceMode`);
  const aws = spec.aws;
  if (spec.provider === Provider.LOCAL) {
    if (spec.fenceMode === FenceMode.ROLES) {
      throw new InvalidArgumentError(
        "spec.fence_mode FENCE_MODE_ROLES is for PROVIDER_AWS: the local provider fences with pg_hba.conf (FENCE_MODE_NETWORK, or leave it unset)",
      );
    }
    if (aws && (aws.clusterParameterGroup || aws.instanceClass))
      throw new InvalidArgumentError("spec.aws is only for PROVIDER_AWS; leave it empty for PROVIDER_LOCAL");
    return { fenceMode: FenceMode.NETWORK, aws: undefined };
  }
  if (aws?.clusterParameterGroup && !AWS_PARAMETER_GROUP.test(aws.clusterParameterGroup)) {
    throw new InvalidArgumentError(
      `spec.aws.cluster_parameter_group "${aws.clusterParameterGroup.slice(0, 80)}" is not a DB cluster parameter group name: a letter, then letters, digits, dots or hyphens`,
    );
  }
  if (aws?.instanceClass && !AWS_INSTANCE_CLASS.test(aws.instanceClass)) {
    throw new InvalidArgumentError(
      `spec.aws.instance_class "${aws.instanceClass.slice(0, 80)}" is not an instance class such as db.r6g.large`,
    );
  }
  return {
    fenceMode: spec.fenceMode,
    aws:
      aws &&
      create(AwsOptionsSchema, { clusterParameterGroup: aws.clusterParameterGroup, instanceClass: aws.instanceClass }),
  };
}

function normalizeRollbackPolicy(spec: MigrationSpec) {
  const p = spec.rollbackPolicy;
  for (const [field, v] of [
    ["max_reverse_lag_bytes", p?.maxReverseLagBytes],
    ["max_target_retained_bytes", p?.maxTargetRetainedBytes],
    ["fence_below_lag_bytes", p?.fenceBelowLagBytes],
  ] as const) {
    if (v !== undefined && v < 0n)
      throw new InvalidArgumentError(`spec.rollback_policy.${field} must not be negative; got ${v}`);
  }
  if (p && !(p.onExceeded in RollbackExceededAction)) {
    throw new InvalidArgumentError(`spec.rollback_policy.on_exceeded ${p.onExceeded} is not a RollbackExceededAction`);
  }
  return {
    maxReverseLagBytes: p?.maxReverseLagBytes || DEFAULTS.maxReverseLagBytes,
    maxTargetRetainedBytes: p?.maxTargetRetainedBytes || DEFAULTS.maxTargetRetainedBytes,
    onExceeded: !p || p.onExceeded === RollbackExceededAction.UNSPECIFIED ? RollbackExceededAction.WARN : p.onExceeded,
    // 0 is a choice here (fence at once), so an unset policy is what takes the default.
    fenceBelowLagBytes: p ? p.fenceBelowLagBytes : DEFAULTS.fenceBelowLagBytes,
    fenceWait: checkDuration("spec.rollback_policy.fence_wait", p?.fenceWait, DEFAULTS.fenceWaitMs, MAX_WINDOW_MS),
  };
}

function normalizeStepPolicy(spec: MigrationSpec) {
  const p = spec.stepPolicy;
  if (p && p.maxAttempts > 100)
    throw new InvalidArgumentError(`spec.step_policy.max_attempts must be at most 100; got ${p.maxAttempts}`);
  const deadlines: Record<string, Duration> = {};
  for (const [phase, d] of Object.entries(p?.phaseDeadlines ?? {})) {
    if (!isPhaseName(phase)) {
      throw new InvalidArgumentError(
        `spec.step_policy.phase_deadlines has key "${phase.slice(0, 40)}", which is not a phase name; use names such as "FINAL_SYNC"`,
      );
    }
    if (!DEADLINE_PHASES.includes(phase)) {
      throw new InvalidArgumentError(
        `spec.step_policy.phase_deadlines["${phase}"] is not allowed: deadlines are for the forward steps (${DEADLINE_PHASES.join(", ")}); a rollback is never given up on`,
      );
    }
    deadlines[phase] = checkDuration(`spec.step_policy.phase_deadlines["${phase}"]`, d, 1, MAX_WINDOW_MS);
  }
  const initial = checkDuration(
    "spec.step_policy.initial_backoff",
    p?.initialBackoff,
    DEFAULTS.initialBackoffMs,
    3600_000,
  );
  const max = checkDuration("spec.step_policy.max_backoff", p?.maxBackoff, DEFAULTS.maxBackoffMs, 3600_000);
  if (durationMs(max)! < durationMs(initial)!)
    throw new InvalidArgumentError("spec.step_policy.max_backoff must not be shorter than initial_backoff");
  return {
    maxAttempts: p?.maxAttempts || DEFAULTS.maxAttempts,
    initialBackoff: initial,
    maxBackoff: max,
    phaseDeadlines: deadlines,
  };
}

/** Phases a deadline may be set for: the forward steps. ROLLING_BACK has none: a rollback is never given up on. */
export const DEADLINE_PHASES: readonly PhaseName[] = FORWARD.slice(0, FORWARD.indexOf("COMPLETED"));

/** Tables a spec names for the schema checks and reverse replication. */
export interface SchemaChoices {
  /** Unlogged tables whose rows may be lost. */
  disposableUnlogged: readonly string[];
  /** Keyless tables pgshift sets REPLICA IDENTITY FULL on before cutover, so a rollback carries all their changes. */
  identityFull: readonly string[];
}

/** Whether a list of a spec's table names names this table of this database ("schema.table" anywhere, or "database.schema.table"). */
export function namesTable(names: readonly string[], database: string, table: string): boolean {
  return (
    names.includes(table) ||
    names.includes(`${database}.${table}`) ||
    names.includes(`"${database.replace(/"/g, '""')}".${table}`)
  );
}

/** A spec's policies as numbers, defaults applied (for specs stored before a field existed). */
export interface ResolvedSpec {
  maxLagBytes: bigint;
  maxLagMs: number;
  windowMs: number;
  drainTimeoutMs: number;
  pauseAlertAfterMs: number;
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  maxReverseLagBytes: bigint;
  maxTargetRetainedBytes: bigint;
  stopReverseWhenExceeded: boolean;
  fenceBelowLagBytes: bigint;
  fenceWaitMs: number;
  /** What the spec chooses for the source's schema (tables as "schema.table" or "database.schema.table"). */
  schema: SchemaChoices;
  /** Transactions older than this on the source hold the cutover before the fence. */
  guardrailMaxTransactionAgeMs: number;
  /** How long the cutover waits for the guardrails before it refuses. */
  guardrailMaxWaitMs: number;
  /** Free fractions of the source's storage below which it warns, then holds. */
  storageWarnFraction: number;
  storageHoldFraction: number;
  /** The phase's deadline in ms, or undefined when it has none. */
  deadlineMs(phase: PhaseName): number | undefined;
}

export function resolveSpec(spec: MigrationSpec): ResolvedSpec {
  const step = spec.stepPolicy;
  return {
    maxLagBytes: spec.lagPolicy?.maxLagBytes || DEFAULTS.maxLagBytes,
    maxLagMs: durationMs(spec.lagPolicy?.maxLagTime) ?? DEFAULTS.maxLagMs,
    windowMs: durationMs(spec.lagPolicy?.window) ?? DEFAULTS.windowMs,
    drainTimeoutMs: durationMs(spec.cdcPolicy?.drainTimeout) ?? DEFAULTS.drainTimeoutMs,
    pauseAlertAfterMs: durationMs(spec.cdcPolicy?.pauseAlertAfter) ?? DEFAULTS.pauseAlertAfterMs,
    maxAttempts: step?.maxAttempts || DEFAULTS.maxAttempts,
    initialBackoffMs: durationMs(step?.initialBackoff) ?? DEFAULTS.initialBackoffMs,
    maxBackoffMs: durationMs(step?.maxBackoff) ?? DEFAULTS.maxBackoffMs,
    maxReverseLagBytes: spec.rollbackPolicy?.maxReverseLagBytes || DEFAULTS.maxReverseLagBytes,
    maxTargetRetainedBytes: spec.rollbackPolicy?.maxTargetRetainedBytes || DEFAULTS.maxTargetRetainedBytes,
    stopReverseWhenExceeded: spec.rollbackPolicy?.onExceeded === RollbackExceededAction.STOP_REVERSE,
    fenceBelowLagBytes: spec.rollbackPolicy ? spec.rollbackPolicy.fenceBelowLagBytes : DEFAULTS.fenceBelowLagBytes,
    fenceWaitMs: durationMs(spec.rollbackPolicy?.fenceWait) ?? DEFAULTS.fenceWaitMs,
    schema: {
      disposableUnlogged: spec.schemaPolicy?.disposableUnloggedTables ?? [],
      identityFull: spec.schemaPolicy?.replicaIdentityFullTables ?? [],
    },
    guardrailMaxTransactionAgeMs:
      durationMs(spec.guardrails?.maxTransactionAge) ?? DEFAULTS.guardrailMaxTransactionAgeMs,
    guardrailMaxWaitMs: durationMs(spec.guardrails?.maxWait) ?? DEFAULTS.guardrailMaxWaitMs,
    storageWarnFraction: spec.storageGuard?.warnBelowFreeFraction || DEFAULTS.storageWarnFraction,
    storageHoldFraction: spec.storageGuard?.holdBelowFreeFraction || DEFAULTS.storageHoldFraction,
    deadlineMs: (phase) => {
      // Getting traffic back to the source has no deadline that could strand it.
      if (!DEADLINE_PHASES.includes(phase)) return undefined;
      const custom = step?.phaseDeadlines[phase];
      return custom ? durationMs(custom) : DEFAULT_PHASE_DEADLINES[phase];
    },
  };
}

export function providerName(p: Provider): string {
  return p === Provider.AWS ? "aws" : "local";
}

/** One key per instance, so the store can refuse two active migrations of it. */
export function instanceKey(provider: Provider, ref: DatabaseRef): string {
  return [providerName(provider), ref.region, ref.id].filter(Boolean).join(":");
}

/** The generated enum of providers, named so that it does not clash with the Provider port. */
export { Provider as ProviderKind };

/** What a spec chooses for its AWS target; unset fields leave the service's settings in force. */
export interface AwsMigrationOptions {
  fence?: "sql" | "network";
  clusterParameterGroup?: string;
  instanceClass?: string;
}

export function awsOptionsOf(spec: MigrationSpec): AwsMigrationOptions {
  return {
    fence: spec.fenceMode === FenceMode.ROLES ? "sql" : spec.fenceMode === FenceMode.NETWORK ? "network" : undefined,
    clusterParameterGroup: spec.aws?.clusterParameterGroup || undefined,
    instanceClass: spec.aws?.instanceClass || undefined,
  };
}

/** The instance a spec names as its source or target, as providers take it. */
export function sourceRef(spec: MigrationSpec): InstanceRef {
  return { id: spec.source!.id, region: spec.source!.region || undefined };
}

export function targetRef(spec: MigrationSpec): InstanceRef {
  return { id: spec.target!.id, region: spec.target!.region || undefined };
}

export function specToJson(spec: MigrationSpec): SpecJson {
  return toJson(MigrationSpecSchema, spec) as SpecJson;
}

export function specFromJson(json: SpecJson): MigrationSpec {
  return fromJson(MigrationSpecSchema, json as never);
}
