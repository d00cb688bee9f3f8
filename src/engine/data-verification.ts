import { dataVerdict, dataVerdictLost } from "../checks/data-compare.js";
import type { StepEnv } from "./step-env.js";

/** The key snapshots for a comparison are held under: one migration, one point (after cutover, after a rollback). */
export function verifyKey(env: Pick<StepEnv, "row">, point: "cutover" | "rollback"): string {
  return `${env.row.id}/${point}`;
}

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
  const report = await env.activities.verify.compareHeld(verifyKey(env, point), dbs, env.signal);
  const expected = point === "rollback" ? (env.state.insertOnlyTables ?? []) : [];
  env.state.dataVerified = { ...env.state.dataVerified, [point]: new Date().toISOString() };
  await env.report(report ? dataVerdict(report, VERIFY_WHAT[point], expected) : dataVerdictLost(VERIFY_WHAT[point]));
}
