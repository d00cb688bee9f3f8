import { Code, ConnectError } from "@connectrpc/connect";
import type { PhaseName } from "../domain/phases.js";
import { BEFORE_PROMOTION, FENCED_BEFORE_PROMOTION } from "../domain/transitions.js";
import { HoldForOperatorError } from "../domain/errors.js";
import { FailurePolicy } from "../gen/migration/v1/migration_pb.js";

/** Codes that no retry can fix: the failure policy applies at once. */
const PERMANENT = new Set([
  Code.InvalidArgument,
  Code.NotFound,
  Code.FailedPrecondition,
  Code.PermissionDenied,
  Code.Unimplemented,
]);

/** A step's error as the policy sees it: its gRPC code, its message, whether a retry could help. */
export interface FailureInfo {
  code: string;
  message: string;
  permanent: boolean;
  /** Only an operator can resolve it (HoldForOperatorError). */
  hold?: boolean;
}

export function failureInfo(e: unknown): FailureInfo {
  const ce = ConnectError.from(e);
  return {
    code: Code[ce.code] ?? "Unknown",
    message: ce.rawMessage,
    permanent: PERMANENT.has(ce.code),
    ...(e instanceof HoldForOperatorError ? { hold: true } : {}),
  };
}

export interface RetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  failurePolicy: FailurePolicy;
}

/**
 * What a failed step leads to:
 * - retry: after the backoff, the same step again;
 * - fall_back: the source was fenced but nothing promoted: unfence it and go
 *   back to REPLICATING, paused (an automatic cutover would fence it again
 *   for the same reason);
 * - fail: nothing fenced or promoted: remove what we created, FAILED;
 * - hold: after promotion, with FAILURE_POLICY_HOLD: stay, paused, for an operator;
 * - roll_back: after promotion: traffic goes back to the source.
 */
export type Decision =
  | { kind: "retry"; backoffMs: number }
  | { kind: "fall_back" }
  | { kind: "fail" }
  | { kind: "hold" }
  | { kind: "roll_back" };

export function backoffMs(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempt - 1));
}

/** The failure policy: a pure function of the phase, the error, the attempt (1 for the first failure) and the spec's policy. */
export function decide(phase: PhaseName, error: FailureInfo, attempt: number, policy: RetryPolicy): Decision {
  if (error.hold) return { kind: "hold" };
  // Getting traffic back to the source is never given up on.
  if (phase === "ROLLING_BACK") return { kind: "retry", backoffMs: backoffMs(policy, attempt) };
  if (!error.permanent && attempt < policy.maxAttempts) return { kind: "retry", backoffMs: backoffMs(policy, attempt) };
  if (FENCED_BEFORE_PROMOTION.includes(phase)) return { kind: "fall_back" };
  if (BEFORE_PROMOTION.includes(phase)) return { kind: "fail" };
  if (policy.failurePolicy === FailurePolicy.HOLD) return { kind: "hold" };
  return { kind: "roll_back" };
}
