import { describe, expect, it } from "vitest";
import { PHASES, type PhaseName } from "../../src/domain/phases.js";
import { assertActionAllowed, assertTransition, FORWARD, isLegalTransition } from "../../src/domain/transitions.js";

describe("the transition table", () => {
  it("allows the happy path one step at a time, and no skipping", () => {
    for (let i = 0; i < FORWARD.length - 1; i++) expect(isLegalTransition(FORWARD[i]!, FORWARD[i + 1]!)).toBe(true);
    expect(isLegalTransition("REPLICATING", "PROMOTING")).toBe(false);
    expect(isLegalTransition("PENDING", "COMPLETED")).toBe(false);
    expect(isLegalTransition("COMPLETED", "REPLICATING")).toBe(false);
  });

  it("never leaves a final phase", () => {
    for (const from of ["FINALIZED", "ROLLED_BACK", "ABORTED", "FAILED"] as PhaseName[]) {
      for (const to of PHASES) expect(isLegalTransition(from, to), `${from} -> ${to}`).toBe(false);
    }
  });

  it("aborts only before QUIESCING, rolls back up to COMPLETED, falls back to REPLICATING only from fenced pre-promotion phases", () => {
    expect(isLegalTransition("REPLICATING", "ABORTED")).toBe(true);
    expect(isLegalTransition("QUIESCING", "ABORTED")).toBe(false);
    expect(isLegalTransition("COMPLETED", "ROLLING_BACK")).toBe(true);
    expect(isLegalTransition("FINALIZED", "ROLLING_BACK")).toBe(false);
    expect(isLegalTransition("FINAL_SYNC", "REPLICATING")).toBe(true);
    expect(isLegalTransition("PROMOTING", "REPLICATING")).toBe(false);
    expect(isLegalTransition("ROLLING_BACK", "ROLLED_BACK")).toBe(true);
    expect(isLegalTransition("ROLLING_BACK", "COMPLETED")).toBe(false);
  });

  it("refuses an illegal transition with FAILED_PRECONDITION naming both phases", () => {
    expect(() => assertTransition("PENDING", "PROMOTING")).toThrow(
      expect.objectContaining({ code: 9, rawMessage: "a migration cannot go from PENDING to PROMOTING" }),
    );
  });

  it("checks operator actions against the phase", () => {
    const none = { paused: false, requested: null };
    expect(() => assertActionAllowed("abort", "FINAL_SYNC", none)).toThrow(/abort is possible only before QUIESCING/);
    expect(() => assertActionAllowed("finalize", "REPLICATING", none)).toThrow(/COMPLETED/);
    expect(() => assertActionAllowed("rollback", "FINALIZED", none)).toThrow(/up to COMPLETED/);
    expect(() => assertActionAllowed("resume", "REPLICATING", none)).toThrow(/not paused/);
    // Writes are stopped from the fence until routing: no pause there.
    for (const p of ["QUIESCING", "FINAL_SYNC", "CDC_PREPARE", "PROMOTING", "CDC_RESTORE", "ROUTING"] as const) {
      expect(() => assertActionAllowed("pause", p, none)).toThrow(/cutover is under way .* use RollbackMigration/);
    }
    expect(() => assertActionAllowed("pause", "VERIFYING", none)).not.toThrow();
    expect(() => assertActionAllowed("pause", "READY_FOR_CUTOVER", none)).not.toThrow();
    expect(() => assertActionAllowed("approve", "COMPLETED", none)).toThrow(/up to READY_FOR_CUTOVER/);
    expect(() => assertActionAllowed("rollback", "REPLICATING", { paused: false, requested: "abort" })).toThrow(
      /abort was already requested/,
    );
    expect(() => assertActionAllowed("rollback", "COMPLETED", none)).not.toThrow();
  });
});
