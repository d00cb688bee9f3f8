import type { Sql, SqlPort } from "../providers/sql.js";
import { check, type CheckResult } from "../domain/check.js";
import type { Baseline } from "../domain/state.js";

/**
 * Write transactions are counted by the next transaction id, which moves the
 * moment one starts writing; pg_stat_database's counters reach shared memory
 * only every second or so, too late for a short sample.
 */
async function counters(c: Sql): Promise<{ xids: number; rollbacks: number; conns: number }> {
  const r = await c.query<{ xids: string; rollbacks: string; conns: string }>(
    `select pg_snapshot_xmax(pg_current_snapshot())::text as xids,
            (select sum(xact_rollback) from pg_stat_database)::text as rollbacks,
            (select count(*) from pg_stat_activity where backend_type = 'client backend')::text as conns`,
  );
  return { xids: Number(r.rows[0]!.xids), rollbacks: Number(r.rows[0]!.rollbacks), conns: Number(r.rows[0]!.conns) };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? 0;
}

/**
 * Samples a database for sampleMs: throughput and errors from its counters,
 * connections, and commit latency from probe transactions that commit an xid
 * (and so wait for the WAL flush, as the application's commits do) without
 * touching any table.
 */
export async function captureBaseline(sql: SqlPort, sampleMs: number): Promise<Baseline> {
  return sql.session(async (c) => {
    const a = await counters(c);
    const t0 = performance.now();
    const lat: number[] = [];
    while (performance.now() - t0 < sampleMs) {
      const s = performance.now();
      await c.query("begin; select txid_current(); commit;");
      lat.push(performance.now() - s);
      await new Promise((r) => setTimeout(r, 20));
    }
    const b = await counters(c);
    const secs = (performance.now() - t0) / 1000;
    // Our own probes take transaction ids too: leave them out of the application's throughput.
    return {
      commitsPerSec: Math.max(0, b.xids - a.xids - lat.length) / secs,
      rollbacksPerSec: (b.rollbacks - a.rollbacks) / secs,
      connections: b.conns,
      commitP50Ms: quantile(lat, 0.5),
      commitP99Ms: quantile(lat, 0.99),
      sampledMs: Math.round(secs * 1000),
    };
  });
}

export interface BaselineTolerance {
  /** After/before throughput must be at least this (0.5: not halved). */
  minThroughputRatio: number;
  /** After p99 may be at most this multiple of before, plus slackMs. */
  maxLatencyRatio: number;
  latencySlackMs: number;
  /** Extra rollbacks per second allowed. */
  maxExtraRollbacksPerSec: number;
}

// Wide enough that one slow fsync on a busy host is not a regression; a target on a slower class or disk still is.
export const DEFAULT_TOLERANCE: BaselineTolerance = {
  minThroughputRatio: 0.5,
  maxLatencyRatio: 4,
  latencySlackMs: 50,
  maxExtraRollbacksPerSec: 5,
};

const fmt = (b: Baseline) =>
  `${b.commitsPerSec.toFixed(1)} commits/s, ${b.rollbacksPerSec.toFixed(1)} rollbacks/s, ${b.connections} connections, commit p50 ${b.commitP50Ms.toFixed(1)} ms / p99 ${b.commitP99Ms.toFixed(1)} ms`;

export function baselineCheck(before: Baseline): CheckResult {
  return check("baseline.captured", "PASS", {
    measured: fmt(before),
    threshold: "recorded before cutover",
    message: `baseline over ${before.sampledMs} ms`,
  });
}

/** Compares the target after cutover with the source before it, within tolerances. */
export function compareBaselines(
  before: Baseline,
  after: Baseline,
  t: BaselineTolerance = DEFAULT_TOLERANCE,
): CheckResult {
  const breaches: string[] = [];
  // A source with hardly any traffic gives no throughput to hold the target to.
  if (before.commitsPerSec >= 5 && after.commitsPerSec < before.commitsPerSec * t.minThroughputRatio) {
    breaches.push(
      `throughput fell from ${before.commitsPerSec.toFixed(1)} to ${after.commitsPerSec.toFixed(1)} commits/s`,
    );
  }
  if (after.commitP99Ms > before.commitP99Ms * t.maxLatencyRatio + t.latencySlackMs) {
    breaches.push(`commit p99 rose from ${before.commitP99Ms.toFixed(1)} to ${after.commitP99Ms.toFixed(1)} ms`);
  }
  if (after.rollbacksPerSec > before.rollbacksPerSec + t.maxExtraRollbacksPerSec) {
    breaches.push(`rollbacks rose from ${before.rollbacksPerSec.toFixed(1)} to ${after.rollbacksPerSec.toFixed(1)}/s`);
  }
  const threshold = `throughput ≥ ${t.minThroughputRatio * 100}% of before, commit p99 ≤ ${t.maxLatencyRatio}× before + ${t.latencySlackMs} ms, rollbacks ≤ before + ${t.maxExtraRollbacksPerSec}/s`;
  return breaches.length === 0
    ? check("baseline.compare", "PASS", { measured: `after: ${fmt(after)}; before: ${fmt(before)}`, threshold })
    : check("baseline.compare", "FAIL", {
        measured: breaches.join("; "),
        threshold,
        message: "the target does worse than the source did under the same load",
        remedy:
          "the migration rolls back per its failure policy; size the target (instance class, parameters) before trying again",
      });
}
