import type { InstanceDescription } from "../providers/provider.js";
import { check, formatBytes, type CheckResult } from "./check.js";

/**
 * Checks of the source alone, before anything is created. Each returns a
 * verdict an operator can act on.
 */
export function preflightChecks(source: InstanceDescription, targetMajor: number): CheckResult[] {
  const results: CheckResult[] = [];
  results.push(
    source.major === targetMajor
      ? check("version.major", "PASS", { measured: `source ${source.major}`, threshold: `target ${targetMajor}`, message: "same major version" })
      : check("version.major", "FAIL", {
          measured: `source ${source.major}`,
          threshold: `target ${targetMajor}`,
          message: "physical replication needs the same major version on both sides",
          remedy: `upgrade the source to ${targetMajor} first, or create the target at major ${source.major}`,
        }),
  );
  results.push(
    source.inRecovery
      ? check("source.role", "FAIL", { measured: "standby", threshold: "primary", message: "the source is a standby", remedy: "migrate from its primary" })
      : check("source.role", "PASS", { measured: "primary", threshold: "primary" }),
  );
  const walLevel = source.settings.wal_level ?? "unknown";
  results.push(
    walLevel === "minimal"
      ? check("settings.wal_level", "FAIL", { measured: walLevel, threshold: "replica or logical", message: "wal_level=minimal cannot feed a replica", remedy: "set wal_level=logical and restart the source" })
      : check("settings.wal_level", "PASS", { measured: walLevel, threshold: "replica or logical" }),
  );
  results.push(...slotChecks(source));
  return results;
}

/**
 * The incident we must never repeat: an inactive logical slot retains WAL
 * without bound. Each such slot fails the gate, named with its size; dropping
 * it is the operator's call, never ours.
 */
export function slotChecks(source: InstanceDescription): CheckResult[] {
  const stale = source.slots.filter((s) => s.type === "logical" && !s.active);
  if (stale.length === 0) {
    return [check("slots.inactive_logical", "PASS", { measured: "0 inactive logical slots", threshold: "0" })];
  }
  const total = stale.reduce((n, s) => n + s.retainedBytes, 0n);
  return [
    check("slots.inactive_logical", "FAIL", {
      measured: stale.map((s) => `${s.name} (${s.plugin}, database ${s.database}) retains ${formatBytes(s.retainedBytes)}`).join("; "),
      threshold: "no inactive logical slot",
      message: `${stale.length} inactive logical slot(s) retain ${formatBytes(total)} of WAL and would keep the replica from converging`,
      remedy: `resume their consumers, or drop them: ${stale.map((s) => `SELECT pg_drop_replication_slot('${s.name}')`).join("; ")}`,
    }),
  ];
}
