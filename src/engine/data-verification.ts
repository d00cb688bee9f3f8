import { dataVerdict, dataVerdictLost } from "../checks/data-compare.js";
import type { StepEnv } from "./step-env.js";

/** The key snapshots for a comparison are held under: one migration, one point (after cutover, after a rollback). */
export function verifyKey(env: Pick<StepEnv, "row">, point: "cutover" | "rollback"): string {
  return `${env.row.id}/${point}`;
}

/** Longest a comparison from held snapshots runs (they are released after MAX_HOLD_MS in any case). */
const MAX_COMPARE_MS = 10 * 60_000;

const VERIFY_WHAT = {
  cutover: "the target against the source at the final LSN",
  rollback: "the source against the fenced target at the rollback's drain point",
} as const;

/**
 * Compares source and target table by table from the snapshots held at `point`, once: the verdict is recorded
 * (a mismatch is a FAIL naming table and range, never a failure of the step), and a rerun of the step does not
 * compare again.
 */
export async function verifyData(env: StepEnv, point: "cutover" | "rollback"): Promise<void> {
  if (env.state.dataVerified?.[point]) return;
  const dbs = env.state.reverseDatabases ?? [];
  // Bounded: within half of what the phase has left (VERIFYING's deadline would roll the migration back), and well
  // within how long a snapshot may be held; what is left then is said, and `ctl verify` compares it on demand.
  const budget = Math.floor(
    Math.min(MAX_COMPARE_MS, Number.isFinite(env.remainingMs) ? env.remainingMs / 2 : MAX_COMPARE_MS),
  );
  const report = await env.activities.verify.compareHeld(
    verifyKey(env, point),
    dbs,
    AbortSignal.any([env.signal, AbortSignal.timeout(budget)]),
  );
  const expected = point === "rollback" ? (env.state.insertOnlyTables ?? []) : [];
  env.state.dataVerified = { ...env.state.dataVerified, [point]: new Date().toISOString() };
  await env.report(report ? dataVerdict(report, VERIFY_WHAT[point], expected) : dataVerdictLost(VERIFY_WHAT[point]));
}
