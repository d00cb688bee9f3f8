import type { PhaseName } from "./phases.js";
import type { CutoverPartJson, CutoverTimingJson } from "./state.js";
import { CUTOVER_WINDOW, FORWARD } from "./transitions.js";

/** How a phase ended, as a metric label and a span attribute. */
export function phaseOutcome(
  from: PhaseName,
  to: PhaseName,
): "advanced" | "fell_back" | "rolled_back" | "failed" | "aborted" {
  if (to === "FAILED") return "failed";
  if (to === "ABORTED") return "aborted";
  if (to === "ROLLING_BACK" || to === "ROLLED_BACK") return "rolled_back";
  return FORWARD.indexOf(to) > FORWARD.indexOf(from) ? "advanced" : "fell_back";
}

/**
 * The timing after a transition: a window opens on entering the cutover phases and closes on leaving them.
 * Returns the previous value when the transition does neither.
 */
export function nextCutoverTiming(
  prev: CutoverTimingJson | undefined,
  from: PhaseName,
  to: PhaseName,
  at: Date,
): CutoverTimingJson | undefined {
  const inFrom = CUTOVER_WINDOW.includes(from);
  const inTo = CUTOVER_WINDOW.includes(to);
  if (!inFrom && inTo) return { startedAt: at.toISOString() };
  if (inFrom && !inTo && prev && !prev.endedAt) {
    const outcome = to === "VERIFYING" ? "ROUTED" : to === "REPLICATING" ? "FELL_BACK" : to;
    return { ...prev, endedAt: at.toISOString(), windowMs: at.getTime() - Date.parse(prev.startedAt), outcome };
  }
  return prev;
}

/** A rollback's timing: opened on entering ROLLING_BACK, closed on leaving it (outcome: the phase it left to). */
export function nextRollbackTiming(
  prev: CutoverTimingJson | undefined,
  from: PhaseName,
  to: PhaseName,
  at: Date,
): CutoverTimingJson | undefined {
  if (to === "ROLLING_BACK" && from !== "ROLLING_BACK") return { startedAt: at.toISOString() };
  if (from === "ROLLING_BACK" && to !== "ROLLING_BACK" && prev && !prev.endedAt)
    return { ...prev, endedAt: at.toISOString(), windowMs: at.getTime() - Date.parse(prev.startedAt), outcome: to };
  return prev;
}

/**
 * A cutover's or a rollback's timing with one more part, while it is open (a part outside it is not its part). A part that
 * runs again (a step resumed, or done twice on purpose) is kept twice: both cost the window.
 */
export function withTimedPart(
  timing: CutoverTimingJson | undefined,
  part: { name: string; phase: PhaseName; startedAt: number; endedAt: number; failed: boolean },
): CutoverTimingJson | undefined {
  if (!timing || timing.endedAt) return timing;
  const entry: CutoverPartJson = {
    name: part.name,
    phase: part.phase,
    startMs: Math.max(0, Math.round(part.startedAt - Date.parse(timing.startedAt))),
    ms: Math.round(part.endedAt - part.startedAt),
    ...(part.failed ? { failed: true } : {}),
  };
  // Recorded as each ends; kept in the order they started.
  return { ...timing, parts: [...(timing.parts ?? []), entry].sort((a, b) => a.startMs - b.startMs) };
}
