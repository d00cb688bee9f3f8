import { describe, expect, it } from "vitest";
import {
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  UnavailableError,
} from "../../src/domain/errors.js";
import { PHASES, isTerminal, type PhaseName } from "../../src/domain/phases.js";
import { backoffMs, decide, failureInfo, type Decision, type RetryPolicy } from "../../src/engine/failure-policy.js";
import { FailurePolicy } from "../../src/gen/migration/v1/migration_pb.js";

const rollback: RetryPolicy = {
  maxAttempts: 5,
  initialBackoffMs: 1000,
  maxBackoffMs: 30_000,
  failurePolicy: FailurePolicy.ROLLBACK,
};
const hold: RetryPolicy = { ...rollback, failurePolicy: FailurePolicy.HOLD };

/** Every phase a step runs in. */
const STEP_PHASES = PHASES.filter((p) => !isTerminal(p) && p !== "COMPLETED");

/** What the policy does once retries are spent (or at once for an error no retry fixes), per phase. */
const FINAL: Record<string, { rollback: Decision["kind"]; hold: Decision["kind"] }> = {
  PENDING: { rollback: "fail", hold: "fail" },
  PREFLIGHT: { rollback: "fail", hold: "fail" },
  PROVISIONING: { rollback: "fail", hold: "fail" },
  REPLICATING: { rollback: "fail", hold: "fail" },
  READY_FOR_CUTOVER: { rollback: "fail", hold: "fail" },
  QUIESCING: { rollback: "fall_back", hold: "fall_back" },
  FINAL_SYNC: { rollback: "fall_back", hold: "fall_back" },
  CDC_PREPARE: { rollback: "fall_back", hold: "fall_back" },
  PROMOTING: { rollback: "roll_back", hold: "hold" },
  CDC_RESTORE: { rollback: "roll_back", hold: "hold" },
  ROUTING: { rollback: "roll_back", hold: "hold" },
  VERIFYING: { rollback: "roll_back", hold: "hold" },
  ROLLING_BACK: { rollback: "retry", hold: "retry" },
};

const KINDS = {
  transient: failureInfo(new UnavailableError("connection refused")),
  deadline: failureInfo(new DeadlineExceededError("phase ran past its deadline")),
  permanent: failureInfo(new FailedPreconditionError("the replica is not running")),
  invalid: failureInfo(new InvalidArgumentError("bad spec")),
  unknown: failureInfo(new Error("socket hang up")),
};

describe("the failure policy: each phase × each kind of failure", () => {
  it("covers every phase a step runs in", () => {
    expect(Object.keys(FINAL).sort()).toEqual([...STEP_PHASES].sort());
  });

  for (const phase of STEP_PHASES as PhaseName[]) {
    it(`${phase}`, () => {
      const want = FINAL[phase]!;
      for (const [kind, info] of Object.entries(KINDS)) {
        for (const [name, policy] of [
          ["rollback", rollback],
          ["hold", hold],
        ] as const) {
          const first = decide(phase, info, 1, policy);
          const last = decide(phase, info, policy.maxAttempts, policy);
          const label = `${phase} ${kind} ${name}`;
          if (info.permanent) {
            // No retry fixes it: the policy acts at once.
            expect(first.kind, label).toBe(want[name]);
          } else {
            expect(first, label).toEqual({ kind: "retry", backoffMs: 1000 });
            expect(decide(phase, info, policy.maxAttempts - 1, policy).kind, label).toBe("retry");
          }
          expect(last.kind, `${label} (attempts spent)`).toBe(want[name]);
        }
      }
    });
  }

  it("classifies errors by their gRPC code", () => {
    expect(KINDS.transient).toMatchObject({ code: "Unavailable", permanent: false });
    expect(KINDS.deadline).toMatchObject({ code: "DeadlineExceeded", permanent: false });
    expect(KINDS.permanent).toMatchObject({
      code: "FailedPrecondition",
      permanent: true,
      message: "the replica is not running",
    });
    expect(KINDS.invalid.permanent).toBe(true);
    expect(KINDS.unknown).toMatchObject({ code: "Unknown", permanent: false });
  });

  it("backs off exponentially up to the cap, and a rollback is retried for ever at the cap", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((a) => backoffMs(rollback, a))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    expect(decide("ROLLING_BACK", KINDS.permanent, 1000, rollback)).toEqual({ kind: "retry", backoffMs: 30_000 });
  });
});
