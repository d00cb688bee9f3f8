import { check, formatBytes, type CheckResult } from "./check.js";
import { lsnDiff } from "./lsn.js";
import type { ResolvedSpec } from "./spec.js";
import type { ReverseStatusJson } from "./state.js";

/** What one look at reverse replication's slots on the target gives. */
export interface ReverseSample {
  lagBytes: bigint;
  retainedBytes: bigint;
  targetLsn: string;
  at: Date;
}

/**
 * The next status from the previous one and a new sample: the apply rate is
 * what the source took in between (WAL the target wrote, less the growth of
 * the backlog), smoothed so that one quiet interval does not erase it.
 */
export function nextReverseStatus(prev: ReverseStatusJson | undefined, s: ReverseSample): ReverseStatusJson {
  let rate = prev?.applyBytesPerSec;
  if (prev) {
    const dt = (s.at.getTime() - Date.parse(prev.sampledAt)) / 1000;
    if (dt > 0) {
      const written = Number(lsnDiff(s.targetLsn, prev.targetLsn));
      const applied = Math.max(0, written - (Number(s.lagBytes) - Number(prev.lagBytes)));
      const now = applied / dt;
      rate = rate === undefined ? now : 0.5 * rate + 0.5 * now;
    }
  }
  return {
    lagBytes: s.lagBytes.toString(),
    retainedBytes: s.retainedBytes.toString(),
    targetLsn: s.targetLsn,
    applyBytesPerSec: rate,
    sampledAt: s.at.toISOString(),
    stoppedReason: prev?.stoppedReason,
  };
}

/** How long applying the backlog would take at the measured rate (what a rollback's drain costs with writes stopped); undefined when unknown. */
export function drainEstimateMs(s: ReverseStatusJson): number | undefined {
  const lag = Number(s.lagBytes);
  if (lag === 0) return 0;
  if (!s.applyBytesPerSec || s.applyBytesPerSec <= 0) return undefined;
  return Math.round((lag / s.applyBytesPerSec) * 1000);
}

export function estimateText(s: ReverseStatusJson): string {
  const ms = drainEstimateMs(s);
  const rate = s.applyBytesPerSec ? `${formatBytes(Math.round(s.applyBytesPerSec))}/s` : "a rate not measured yet";
  return ms === undefined ? `applying it at ${rate}: duration unknown` : `about ${(ms / 1000).toFixed(1)} s at ${rate}`;
}

/** Whether the backlog or the WAL the target retains is past the rollback policy's limits. */
export function pastLimits(s: ReverseStatusJson, p: ResolvedSpec): boolean {
  return BigInt(s.lagBytes) > p.maxReverseLagBytes || BigInt(s.retainedBytes) > p.maxTargetRetainedBytes;
}

/** The verdict on how cheap a lossless rollback still is: PASS within the policy's limits, WARN past them, with what a rollback would cost now. */
export function readinessCheck(s: ReverseStatusJson, p: ResolvedSpec): CheckResult {
  const measured = `reverse backlog ${formatBytes(Number(s.lagBytes))}, target retains ${formatBytes(Number(s.retainedBytes))}; a rollback now applies the backlog with writes stopped: ${estimateText(s)}`;
  const threshold = `backlog ≤ ${formatBytes(Number(p.maxReverseLagBytes))} and retained ≤ ${formatBytes(Number(p.maxTargetRetainedBytes))} (rollback_policy)`;
  if (!pastLimits(s, p))
    return check("rollback.reverse_lag", "PASS", { measured, threshold, message: "a lossless rollback stays cheap" });
  return check("rollback.reverse_lag", "WARN", {
    measured,
    threshold,
    message:
      "reverse replication is behind: a rollback now would stop writes while the source applies the backlog, and the target retains its WAL until finalize",
    remedy: p.stopReverseWhenExceeded
      ? "the rollback policy drops reverse replication now (a lossless rollback is no longer possible); FinalizeMigration closes the window"
      : "reduce the write load, finalize if a rollback is no longer wanted, or roll back now (it waits for the backlog to shrink before fencing, per rollback_policy.fence_below_lag_bytes)",
  });
}
