import { check, newVerdicts } from "../domain/check.js";
import { schemaDriftCheck } from "../checks/schema-drift.js";
import { nextReverseStatus, pastLimits, readinessCheck } from "../domain/rollback-readiness.js";
import type { StepEnv } from "./step-env.js";

/** How often reverse replication is sampled while a migration is COMPLETED. */
export const REVERSE_SAMPLE_MS = 2_000;
/** A verdict that does not change is still recorded this often, so GetMigration and the event log show the figures moving. */
const REVERSE_RECORD_MS = 60_000;

/** The two sides' schema compared, with the statements the target recorded when they differ. */
export async function driftVerdict(env: StepEnv) {
  const dbs = env.state.reverseDatabases ?? [];
  const drift = await env.activities.schema.drift(env.provider, env.source, env.target, dbs);
  const statements = drift.length
    ? await env.activities.schema.capturedDdl(env.provider, env.target, dbs).catch(() => [])
    : [];
  return schemaDriftCheck(drift, env.source.id, statements);
}

/** One sample of reverse replication's backlog, folded into the migration's state (the apply rate measured since the last one). */
export async function sampleReverse(
  env: StepEnv,
): Promise<{ lagBytes: bigint; retainedBytes: bigint; targetLsn: string }> {
  const sample = await env.activities.reverse.backlog(env.provider, env.target);
  env.state.reverse = nextReverseStatus(env.state.reverse, { ...sample, at: new Date() });
  return sample;
}

/**
 * One look at reverse replication while COMPLETED: its backlog and retained
 * WAL sampled into the state and the gauges, the verdict on how cheap a
 * lossless rollback still is recorded when it changes (and once a minute),
 * and, past the rollback policy's limits with STOP_REVERSE, reverse
 * replication dropped, said in an event and a check. Never silent.
 */
export async function watchReverse(env: StepEnv): Promise<void> {
  const { state } = env;
  if ((state.reverseDatabases ?? []).length === 0 || state.reverse?.stoppedReason) return;
  await sampleReverse(env);
  const verdict = readinessCheck(state.reverse!, env.policy);
  const last = state.checks?.find((c) => c.name === verdict.name);
  if (!last || last.status !== verdict.status || Date.now() - Date.parse(last.at) > REVERSE_RECORD_MS)
    await env.report(verdict);
  // Each sample is what GetMigration and the gauges show, as fresh as it is taken.
  else await env.save();
  // A schema change on one side only breaks reverse replication: shown in rollback readiness at the next sample.
  const drift = await driftVerdict(env);
  if (newVerdicts(state.checks ?? [], [drift]).length > 0) await env.report(drift);
  if (env.policy.stopReverseWhenExceeded && pastLimits(state.reverse!, env.policy)) {
    await env.activities.reverse.stop(env.provider, env.source, env.target);
    state.reverse!.stoppedReason = `rollback_policy: ${verdict.measured} (limits: ${verdict.threshold})`;
    await env.report(
      check("rollback.lossless", "WARN", {
        measured: state.reverse!.stoppedReason,
        threshold: "reverse replication within the rollback policy's limits",
        message: `reverse replication was dropped per the rollback policy (on_exceeded STOP_REVERSE): ${env.target.id} no longer retains WAL for it, and a rollback would lose the writes made on it`,
        remedy: "RollbackMigration is refused from now on; FinalizeMigration closes the rollback window",
      }),
    );
  }
}

/** Reverse replication attached, on the slots PROMOTING reserved (a stopped one stays stopped). Idempotent. */
export async function startReverse(env: StepEnv): Promise<void> {
  const dbs = env.state.reverseDatabases ?? [];
  if (dbs.length === 0 || env.state.reverse?.stoppedReason) return;
  await env.activities.reverse.start(env.provider, env.source, env.target, dbs);
}
