import type { PhaseName } from "../domain/phases.js";
import { BEFORE_QUIESCING } from "../domain/transitions.js";
import { cdcContext, type StepEnv } from "./step-env.js";
import { retirementOf } from "../domain/spec.js";

export type ActionOutcome = { to: PhaseName; reason: string };

/**
 * The work an operator's pending request calls for in this phase, if any.
 * Requests are checked against the phase when they are made (the store
 * refuses the others); this is where the driving replica carries them out.
 */
export function operatorAction(env: StepEnv): (() => Promise<ActionOutcome>) | undefined {
  const { row, provider, source, target } = env;
  if (row.requested_action === "abort" && BEFORE_QUIESCING.includes(row.phase)) {
    return async () => {
      const removed = await provider.deleteReplica(source, target, row.id);
      return { to: "ABORTED", reason: `aborted; ${removedText(target.id, removed)}, ${source.id} left as it was` };
    };
  }
  if (row.requested_action === "rollback" && row.phase !== "ROLLING_BACK") {
    return async () => {
      env.state.rollbackFrom = row.phase;
      return { to: "ROLLING_BACK", reason: `rollback requested in ${row.phase}` };
    };
  }
  if (row.requested_action === "finalize" && row.phase === "COMPLETED") {
    return async () => {
      // No slot may stay behind on the target retaining WAL for a source that is gone.
      await env.activities.reverse.stop(provider, source, target);
      // The change streams' slots kept on the source for a rollback retain WAL for nobody now.
      await env.activities.cdc.releaseSourceSlots(cdcContext(env));
      const retired = await provider.retire(source, retirementOf(env.spec), `pgshift-final-${row.id}`);
      return {
        to: "FINALIZED",
        reason: `${retired}; reverse replication and the CDC slots kept for a rollback removed; the rollback window is closed`,
      };
    };
  }
  return undefined;
}

/** What became of a target this migration may have created, in words. */
export function removedText(target: string, result: "deleted" | "absent" | "not-ours"): string {
  if (result === "deleted") return `${target} removed`;
  if (result === "absent") return `${target} had not been created`;
  return `${target} left alone (this migration did not create it)`;
}
