import { FailedPreconditionError } from "./errors.js";
import { PHASES, type PhaseName } from "./phases.js";
import type { RequestedAction } from "./state.js";

/** The happy path, in order: the phases as listed, up to FINALIZED (the side exits follow it there). */
export const FORWARD: readonly PhaseName[] = PHASES.slice(0, PHASES.indexOf("FINALIZED") + 1);

const index = (p: PhaseName) => FORWARD.indexOf(p);

/** Phases in which the source has not been fenced: abort just removes the target. */
export const BEFORE_QUIESCING: readonly PhaseName[] = FORWARD.slice(0, index("QUIESCING"));
/** Phases before the target was promoted: the source never stopped being the truth. */
export const BEFORE_PROMOTION: readonly PhaseName[] = FORWARD.slice(0, index("PROMOTING"));
/** Phases rollback is possible from: everything up to COMPLETED. */
export const ROLLBACKABLE: readonly PhaseName[] = FORWARD.slice(0, index("COMPLETED") + 1);
/** Cutover phases that a pre-promotion failure falls back from, to REPLICATING. */
export const FENCED_BEFORE_PROMOTION: readonly PhaseName[] = ["QUIESCING", "FINAL_SYNC", "CDC_PREPARE"];
/** From the fence until traffic reaches the target: writes are stopped, so nothing may hold here for an operator's pause. */
export const CUTOVER_WINDOW: readonly PhaseName[] = FORWARD.slice(index("QUIESCING"), index("ROUTING") + 1);

export function nextForward(p: PhaseName): PhaseName | undefined {
  const i = index(p);
  return i >= 0 && i < FORWARD.length - 1 ? FORWARD[i + 1] : undefined;
}

/** Every legal transition. Anything else is a bug or a stale writer, and is refused. */
export function isLegalTransition(from: PhaseName, to: PhaseName): boolean {
  if (nextForward(from) === to) return true;
  if (to === "ABORTED") return BEFORE_QUIESCING.includes(from);
  if (to === "ROLLING_BACK") return ROLLBACKABLE.includes(from);
  if (from === "ROLLING_BACK") return to === "ROLLED_BACK" || to === "FAILED";
  // A failure before promotion unfences and waits again in a safe phase.
  if (to === "REPLICATING") return FENCED_BEFORE_PROMOTION.includes(from);
  if (to === "FAILED") return BEFORE_PROMOTION.includes(from) || ["CDC_RESTORE", "ROUTING", "VERIFYING"].includes(from);
  return false;
}

export function assertTransition(from: PhaseName, to: PhaseName): void {
  if (!isLegalTransition(from, to)) {
    throw new FailedPreconditionError(`a migration cannot go from ${from} to ${to}`);
  }
}

export type OperatorAction = "approve" | "pause" | "resume" | RequestedAction;

/** Checks an operator's request against the phase; the message says when it would be allowed. */
export function assertActionAllowed(
  action: OperatorAction,
  phase: PhaseName,
  flags: { paused: boolean; requested: RequestedAction | null },
): void {
  const refuse = (why: string): never => {
    throw new FailedPreconditionError(`cannot ${action} a migration in ${phase}: ${why}`);
  };
  if (flags.requested && flags.requested !== action)
    refuse(`${flags.requested} was already requested and is under way`);
  switch (action) {
    case "approve":
      if (index(phase) < 0 || index(phase) > index("READY_FOR_CUTOVER"))
        refuse("approval is for migrations up to READY_FOR_CUTOVER");
      return;
    case "pause":
      if (!FORWARD.includes(phase) || phase === "COMPLETED" || phase === "FINALIZED")
        refuse("only a migration on its way to COMPLETED can be paused");
      if (CUTOVER_WINDOW.includes(phase))
        refuse(
          "the cutover is under way and writes are stopped until ROUTING ends; pause before QUIESCING or after, or use RollbackMigration",
        );
      return;
    case "resume":
      if (!flags.paused) refuse("it is not paused");
      return;
    case "abort":
      if (!BEFORE_QUIESCING.includes(phase)) refuse("abort is possible only before QUIESCING; use RollbackMigration");
      return;
    case "rollback":
      if (!ROLLBACKABLE.includes(phase)) refuse("rollback is possible up to COMPLETED");
      return;
    case "finalize":
      if (phase !== "COMPLETED") refuse("finalize ends the rollback window of a COMPLETED migration");
      return;
  }
}
