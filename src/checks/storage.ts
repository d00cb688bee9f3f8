import { check, formatBytes, type CheckResult } from "../domain/check.js";
import type { StorageFigures } from "../domain/storage.js";

/**
 * storage.source: the source's free storage against the spec's guard. While the replica is built and replays, its
 * slot keeps the source's WAL: on a busy source that is what fills the disk, and a full source stops taking writes.
 * WARN below the first fraction; FAIL (the migration holds) below the second, before it runs out.
 */
export function storageCheck(
  instance: string,
  f: StorageFigures,
  warnFraction: number,
  holdFraction: number,
): CheckResult {
  const free = f.totalBytes > 0 ? f.freeBytes / f.totalBytes : 1;
  const status = free < holdFraction ? "FAIL" : free < warnFraction ? "WARN" : "PASS";
  const wal = f.walBytes !== undefined ? `, ${formatBytes(BigInt(Math.round(f.walBytes)))} of it WAL` : "";
  return check("storage.source", status, {
    measured: `${instance}: ${formatBytes(BigInt(Math.round(f.freeBytes)))} free of ${formatBytes(BigInt(Math.round(f.totalBytes)))} (${(free * 100).toFixed(1)}%)${wal}; ${f.by}`,
    threshold: `WARN below ${(warnFraction * 100).toFixed(0)}% free, hold below ${(holdFraction * 100).toFixed(0)}% (spec.storage_guard)`,
    message:
      status === "PASS"
        ? ""
        : status === "WARN"
          ? "the source's storage is running low while the replica's slot keeps its WAL"
          : "the source is close to running out of storage: the migration holds here so that nothing it keeps fills the disk",
    remedy:
      status === "PASS"
        ? ""
        : "add storage to the source (AWS: ModifyDBInstance AllocatedStorage, or storage autoscaling), or lower its write rate until the replica catches up; then resume. AbortMigration removes the replica and the WAL it keeps",
  });
}
