import { describe, expect, it } from "vitest";
import { nextCutoverTiming, nextRollbackTiming, withTimedPart } from "../../src/domain/cutover-timing.js";

const t0 = Date.parse("2026-12-06T12:00:00.000Z");
const part = (name: string, from: number, to: number, failed = false) => ({
  name,
  phase: "FINAL_SYNC" as const,
  startedAt: t0 + from,
  endedAt: t0 + to,
  failed,
});

describe("the cutover's breakdown", () => {
  it("records parts only while a window is open, in the order they started, failed ones marked", () => {
    expect(withTimedPart(undefined, part("replay", 0, 5))).toBeUndefined();
    let timing = nextCutoverTiming(undefined, "READY_FOR_CUTOVER", "QUIESCING", new Date(t0));
    // Side by side: the replay wait ends after the CDC drain that started later.
    timing = withTimedPart(timing, part("cdc_drain", 12, 20));
    timing = withTimedPart(timing, part("replay", 10, 30, true));
    expect(timing!.parts).toEqual([
      { name: "replay", phase: "FINAL_SYNC", startMs: 10, ms: 20, failed: true },
      { name: "cdc_drain", phase: "FINAL_SYNC", startMs: 12, ms: 8 },
    ]);
    const closed = nextCutoverTiming(timing, "ROUTING", "VERIFYING", new Date(t0 + 40));
    expect(closed).toMatchObject({ windowMs: 40, outcome: "ROUTED", parts: timing!.parts });
    expect(withTimedPart(closed, part("late", 50, 60))).toBe(closed);
  });

  it("times a rollback from entering ROLLING_BACK to leaving it, apart from the cutover's", () => {
    expect(nextRollbackTiming(undefined, "ROUTING", "VERIFYING", new Date(t0))).toBeUndefined();
    let timing = nextRollbackTiming(undefined, "COMPLETED", "ROLLING_BACK", new Date(t0));
    expect(timing).toEqual({ startedAt: new Date(t0).toISOString() });
    timing = withTimedPart(timing, { ...part("drain", 5, 25), phase: "ROLLING_BACK" });
    // A rollback resumed by a new driver is still the same rollback.
    expect(nextRollbackTiming(timing, "ROLLING_BACK", "ROLLING_BACK", new Date(t0 + 10))).toBe(timing);
    expect(nextRollbackTiming(timing, "ROLLING_BACK", "ROLLED_BACK", new Date(t0 + 30))).toMatchObject({
      windowMs: 30,
      outcome: "ROLLED_BACK",
      parts: [{ name: "drain", phase: "ROLLING_BACK", startMs: 5, ms: 20 }],
    });
  });
});
