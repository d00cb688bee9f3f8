import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  CheckStatus,
  EventType,
  Phase,
  type Migration,
  type MigrationEvent,
} from "../gen/migration/v1/migration_pb.js";

/** Phases a watch ends on. */
export const FINAL_PHASES: readonly Phase[] = [Phase.FINALIZED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED];

const phaseName = (p: Phase) => Phase[p] ?? String(p);
const ms = (d: Duration | undefined) => (d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : undefined);
const at = (t: Timestamp | undefined) => (t ? timestampDate(t) : undefined);
const clock = (d: Date) => d.toISOString().slice(11, 23);

function secs(n: number): string {
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 120_000) return `${(n / 1000).toFixed(1)} s`;
  if (n < 7_200_000) return `${Math.floor(n / 60_000)} min ${Math.round((n % 60_000) / 1000)} s`;
  return `${(n / 3_600_000).toFixed(1)} h`;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** A bar of `width` cells filled to `fraction` (0..1). */
export function bar(fraction: number, width = 30): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}]`;
}

export interface ViewOptions {
  now: Date;
  /** ANSI colours for verdicts (on a terminal). */
  color: boolean;
  /** How many verdicts to list, newest last. */
  verdicts?: number;
}

/**
 * The live view of one migration, as text: where it is, how it got there, the lag window filling, lag and WAL
 * rate, and the verdicts as they come. Pure: `pgshift ctl watch` redraws it on each event and each second.
 */
export function renderWatch(m: Migration, events: MigrationEvent[], o: ViewOptions): string {
  const paint = (status: CheckStatus, s: string) => {
    if (!o.color) return s;
    const code = status === CheckStatus.PASS ? 32 : status === CheckStatus.WARN ? 33 : 31;
    return `\x1b[${code}m${s}\x1b[0m`;
  };
  const spec = m.spec;
  const lines: string[] = [];
  lines.push(`pgshift ctl watch ${m.id}`);
  lines.push(`  ${spec?.databaseName ?? ""}: ${spec?.source?.id ?? "?"} -> ${spec?.target?.id ?? "?"}`);
  const history = m.history;
  const entered = history.length ? at(history[history.length - 1]!.at) : at(m.createdAt);
  const flags = [
    m.paused ? "PAUSED" : "",
    m.lastError && !FINAL_PHASES.includes(m.phase) ? "last attempt failed" : "",
  ].filter(Boolean);
  lines.push(
    `  phase ${phaseName(m.phase)}${entered ? ` for ${secs(o.now.getTime() - entered.getTime())}` : ""}${flags.length ? `  (${flags.join(", ")})` : ""}`,
  );
  lines.push("");

  lines.push("timeline");
  const steps: { phase: Phase; at: Date }[] = [];
  const created = at(m.createdAt);
  if (created) steps.push({ phase: Phase.PENDING, at: created });
  for (const h of history) {
    const t = at(h.at);
    if (t) steps.push({ phase: h.to, at: t });
  }
  steps.forEach((s, i) => {
    const next = steps[i + 1];
    const took = (next ? next.at : o.now).getTime() - s.at.getTime();
    const current = !next && !FINAL_PHASES.includes(s.phase);
    lines.push(
      `  ${phaseName(s.phase).padEnd(18)} ${clock(s.at)}  ${FINAL_PHASES.includes(s.phase) && !next ? "" : secs(took)}${current ? "  <- now" : ""}`,
    );
  });
  lines.push("");

  const r = m.replication;
  const windowMs = ms(spec?.lagPolicy?.window);
  if (r) {
    if (m.phase === Phase.REPLICATING && windowMs) {
      const held = ms(r.windowHeld) ?? 0;
      lines.push(`lag window ${bar(held / windowMs)} ${secs(held)} of ${secs(windowMs)} under the thresholds`);
    }
    const sampled = at(r.sampledAt);
    lines.push(
      `lag ${r.lagBytes === undefined ? "unknown" : bytes(Number(r.lagBytes))} / ${ms(r.lag) === undefined ? "unknown" : secs(ms(r.lag)!)}` +
        `   WAL rate ${bytes(r.walBytesPerSecond)}/s   replica ${r.state || "not connected"}` +
        (sampled ? `   (sampled ${secs(o.now.getTime() - sampled.getTime())} ago)` : ""),
    );
  }
  if (m.cutover) {
    const w = ms(m.cutover.window);
    lines.push(
      `cutover window ${w === undefined ? `under way for ${secs(o.now.getTime() - (at(m.cutover.startedAt)?.getTime() ?? o.now.getTime()))}` : `${secs(w)} (${m.cutover.outcome})`}`,
    );
  }
  if (m.reverse && !m.reverse.stoppedReason) {
    const d = ms(m.reverse.rollbackDrainEstimate);
    lines.push(
      `rollback: reverse lag ${bytes(Number(m.reverse.lagBytes))}${d === undefined ? "" : `, drain ~${secs(d)}`}`,
    );
  }
  if (r || m.cutover || m.reverse) lines.push("");

  const verdicts = events.filter((e) => e.type === EventType.CHECK_RESULT && e.check).slice(-(o.verdicts ?? 12));
  lines.push("verdicts");
  if (verdicts.length === 0) lines.push("  none yet");
  for (const e of verdicts) {
    const c = e.check!;
    const t = at(e.at);
    const status = (CheckStatus[c.status] ?? "").padEnd(4);
    lines.push(`  ${t ? clock(t) : ""}  ${paint(c.status, status)}  ${c.name.padEnd(26)} ${c.message || c.measured}`);
  }
  if (m.lastError && m.lastError.message) {
    lines.push("");
    lines.push(`last error (${phaseName(m.lastError.phase)}): ${m.lastError.message}`);
  }
  return lines.join("\n") + "\n";
}
