import { check, type CheckResult } from "../domain/check.js";
import type { Sql } from "../providers/sql.js";
import { DDL_CAPTURE_SCHEMA } from "../domain/schema-inventory.js";

/** A table to compare, and the integer key it is split on (none: compared whole). */
export interface ComparableTable {
  name: string;
  key?: string;
  rowsEstimate: number;
}

/** A half-open key range [lo, hi) of a table (both undefined: the whole table). */
export interface KeyRange {
  lo?: string;
  hi?: string;
}

export interface RangeMismatch {
  database: string;
  table: string;
  range: string;
  source: string;
  target: string;
}

/** What a comparison saw. */
export interface CompareReport {
  databases: number;
  tables: number;
  ranges: number;
  rows: number;
  mismatches: RangeMismatch[];
  /** Ranges written throughout a comparison of live sides, so never seen at rest on both: not compared. */
  inFlux?: string[];
  /** The comparison was stopped (its time ran out) before every table was compared. */
  incomplete?: boolean;
  ms: number;
}

type DatabaseReport = Omit<CompareReport, "databases" | "ms" | "incomplete">;

/** Compares database after database with `one`, adding up what each saw, until done or the signal stops it (then incomplete). */
export async function compareDatabases(
  databases: string[],
  signal: AbortSignal,
  one: (database: string, signal: AbortSignal) => Promise<DatabaseReport>,
): Promise<CompareReport> {
  const started = performance.now();
  const report: CompareReport = {
    databases: databases.length,
    tables: 0,
    ranges: 0,
    rows: 0,
    mismatches: [],
    inFlux: [],
    ms: 0,
  };
  for (const db of databases) {
    if (signal.aborted) break;
    const r = await one(db, signal);
    report.tables += r.tables;
    report.ranges += r.ranges;
    report.rows += r.rows;
    report.mismatches.push(...r.mismatches);
    report.inFlux!.push(...(r.inFlux ?? []));
  }
  report.incomplete = signal.aborted;
  report.ms = performance.now() - started;
  return report;
}

/** Rows a range holds, about: small enough that one digest is a short statement, large enough to keep them few. */
export const ROWS_PER_RANGE = 20_000;

/**
 * The tables whose rows both sides must hold alike: logged plain tables and partitions (unlogged tables arrive empty
 * by construction and are judged in preflight), with a single-column integer primary key to split on where there is one.
 */
export async function comparableTables(sql: Sql): Promise<ComparableTable[]> {
  const r = await sql.query<{ name: string; key: string | null; est: string }>(
    `select format('%I.%I', n.nspname, c.relname) as name, greatest(c.reltuples, 0)::bigint::text as est,
            (select quote_ident(a.attname) from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
              where i.indrelid = c.oid and i.indisprimary and i.indnatts = 1 and a.atttypid in ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)) as key
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'r' and c.relpersistence = 'p'
        and n.nspname not in ('pg_catalog', 'information_schema', '${DDL_CAPTURE_SCHEMA}') and n.nspname !~ '^pg_(toast|temp_)'
      order by 1`,
  );
  return r.rows.map((t) => ({ name: t.name, key: t.key ?? undefined, rowsEstimate: Number(t.est) }));
}

/**
 * Key ranges of about ROWS_PER_RANGE rows each, from the key's bounds on this side and the row estimate; one range
 * without a key. Open at both ends, so that rows the other side has beyond these bounds fall in the first or last
 * range; with `closedAbove`, the last ends at this side's highest key (rows added above it since are not compared).
 */
export async function keyRanges(
  sql: Sql,
  t: ComparableTable,
  opts: { closedAbove?: boolean } = {},
): Promise<KeyRange[]> {
  if (!t.key) return [{}];
  const b = (
    await sql.query<{ lo: string | null; hi: string | null }>(
      `select min(${t.key})::text as lo, max(${t.key})::text as hi from only ${t.name}`,
    )
  ).rows[0]!;
  if (b.lo === null || b.hi === null) return [{}];
  const lo = BigInt(b.lo);
  const hi = BigInt(b.hi) + 1n;
  const parts = BigInt(Math.max(1, Math.ceil(t.rowsEstimate / ROWS_PER_RANGE)));
  const width = (hi - lo + parts - 1n) / parts;
  const out: KeyRange[] = [];
  const top = (end: bigint) => (end < hi ? String(end) : opts.closedAbove ? String(hi) : undefined);
  for (let at = lo; at < hi; at += width) out.push({ lo: at === lo ? undefined : String(at), hi: top(at + width) });
  return out;
}

/** Row count and an order-independent digest of the rows in a range: the sum of each row's 60-bit hash. */
export async function rangeDigest(
  sql: Sql,
  t: ComparableTable,
  r: KeyRange,
): Promise<{ rows: number; digest: string }> {
  const where = [
    r.lo !== undefined ? `${t.key} >= ${BigInt(r.lo)}` : "",
    r.hi !== undefined ? `${t.key} < ${BigInt(r.hi)}` : "",
  ].filter(Boolean);
  const row = (
    await sql.query<{ n: string; h: string }>(
      `select count(*)::text as n, coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint::numeric), 0)::text as h
         from only ${t.name} t${where.length ? ` where ${where.join(" and ")}` : ""}`,
    )
  ).rows[0]!;
  return { rows: Number(row.n), digest: `${row.n}:${row.h}` };
}

export function rangeText(t: ComparableTable, r: KeyRange): string {
  if (!t.key) return "whole table";
  return `${t.key} ${r.lo === undefined ? "(-∞" : `[${r.lo}`}, ${r.hi === undefined ? "∞)" : `${r.hi})`}`;
}

/** A range whose rows differ, with what each side holds there. */
function mismatch(
  database: string,
  t: ComparableTable,
  r: KeyRange,
  s: { rows: number },
  g: { rows: number },
): RangeMismatch {
  return { database, table: t.name, range: rangeText(t, r), source: `${s.rows} rows`, target: `${g.rows} rows` };
}

/**
 * Compares one database on both sides, table by table and range by range, as each side's SQL sees it (a held
 * snapshot, for a comparison at one point in time), pausing throttleMs between ranges so that it never competes
 * with the application for long.
 */
export async function compareDatabase(
  database: string,
  source: Sql,
  target: Sql,
  opts: { throttleMs: number; signal?: AbortSignal },
): Promise<DatabaseReport> {
  const out = { tables: 0, ranges: 0, rows: 0, mismatches: [] as RangeMismatch[] };
  const [src, tgt] = await Promise.all([comparableTables(source), comparableTables(target)]);
  const onSource = new Set(src.map((t) => t.name));
  for (const t of tgt) {
    if (!onSource.has(t.name)) {
      out.mismatches.push({ database, table: t.name, range: "whole table", source: "absent", target: "present" });
      continue;
    }
    out.tables++;
    for (const r of await keyRanges(target, t)) {
      if (opts.signal?.aborted) return out;
      const [s, g] = await Promise.all([rangeDigest(source, t, r), rangeDigest(target, t, r)]);
      out.ranges++;
      out.rows += g.rows;
      if (s.digest !== g.digest) out.mismatches.push(mismatch(database, t, r, s, g));
      if (opts.throttleMs > 0) await new Promise((res) => setTimeout(res, opts.throttleMs));
    }
  }
  for (const name of onSource) {
    if (!tgt.some((t) => t.name === name))
      out.mismatches.push({ database, table: name, range: "whole table", source: "present", target: "absent" });
  }
  return out;
}

/** How a comparison of two live sides waits for the one that follows: the leader's position, and a wait until the follower reached it. */
export interface Convergence {
  leader: "source" | "target";
  leaderLsn(): Promise<string>;
  caughtUp(lsn: string): Promise<void>;
  /** Looks at a range that differs before it is named (default 3). */
  tries?: number;
}

/**
 * Compares one database on both sides as they are now, both taking writes or replaying them: each range is read on
 * the side that leads, then on the one that follows; where they differ, the follower is waited for up to the
 * leader's position and the range read again, up to `tries` times, so that only a difference that persists is
 * named. Throttled as compareDatabase.
 */
export async function compareConverging(
  database: string,
  source: Sql,
  target: Sql,
  conv: Convergence,
  opts: { throttleMs: number; signal?: AbortSignal },
): Promise<DatabaseReport> {
  const [leader, follower] = conv.leader === "source" ? [source, target] : [target, source];
  const out = { tables: 0, ranges: 0, rows: 0, mismatches: [] as RangeMismatch[], inFlux: [] as string[] };
  const [lt, ft] = await Promise.all([comparableTables(leader), comparableTables(follower)]);
  const other = conv.leader === "source" ? "target" : "source";
  const absent = (name: string, on: "source" | "target") =>
    out.mismatches.push({
      database,
      table: name,
      range: "whole table",
      source: on === "source" ? "absent" : "present",
      target: on === "target" ? "absent" : "present",
    });
  for (const t of ft) if (!lt.some((l) => l.name === t.name)) absent(t.name, conv.leader);
  for (const t of lt) {
    if (!ft.some((f) => f.name === t.name)) {
      absent(t.name, other);
      continue;
    }
    out.tables++;
    // Up to the keys the follower has now: rows inserted above them while the comparison runs wait for the next one.
    for (const r of await keyRanges(follower, t, { closedAbove: true })) {
      if (opts.signal?.aborted) return out;
      const seen = await settle(leader, follower, t, r, conv);
      out.ranges++;
      out.rows += seen.leader.rows;
      if (seen.verdict === "flux") out.inFlux.push(`${database}.${t.name} ${rangeText(t, r)}`);
      if (seen.verdict === "differ") {
        const [s, g] = conv.leader === "source" ? [seen.leader, seen.follower] : [seen.follower, seen.leader];
        out.mismatches.push(mismatch(database, t, r, s, g));
      }
      if (opts.throttleMs > 0) await new Promise((res) => setTimeout(res, opts.throttleMs));
    }
  }
  return out;
}

type Digest = Awaited<ReturnType<typeof rangeDigest>>;

/**
 * One range of two live sides: equal at once, or the follower waited for up to the leader's position and both
 * read again. A difference counts only when the leader did not change while the follower caught up and was read
 * (then the follower holds everything the leader had); a leader that changes at every look is in flux.
 */
async function settle(
  leader: Sql,
  follower: Sql,
  t: ComparableTable,
  r: KeyRange,
  conv: Convergence,
): Promise<{ verdict: "match" | "differ" | "flux"; leader: Digest; follower: Digest }> {
  let l = await rangeDigest(leader, t, r);
  let f = await rangeDigest(follower, t, r);
  if (l.digest === f.digest) return { verdict: "match", leader: l, follower: f };
  for (let i = 0; i < (conv.tries ?? 3); i++) {
    await conv.caughtUp(await conv.leaderLsn());
    f = await rangeDigest(follower, t, r);
    const again = await rangeDigest(leader, t, r);
    if (f.digest === again.digest) return { verdict: "match", leader: again, follower: f };
    if (again.digest === l.digest) return { verdict: "differ", leader: l, follower: f };
    l = again;
  }
  return { verdict: "flux", leader: l, follower: f };
}

function listMismatches(ms: RangeMismatch[]): string {
  const shown = ms
    .slice(0, 20)
    .map((m) => `${m.database}.${m.table} ${m.range}: source ${m.source}, target ${m.target}`);
  return `${shown.join("; ")}${ms.length > shown.length ? `; and ${ms.length - shown.length} more` : ""}`;
}

/**
 * The verdict on a comparison: PASS when every range matched; FAIL naming each table and range that did not;
 * WARN when only tables `expected` lists differ (those a rollback carries inserts of only, as rollback.coverage said).
 */
export function dataVerdict(report: CompareReport, what: string, expected: readonly string[] = []): CheckResult {
  const measured = `${report.databases} database(s), ${report.tables} table(s), ${report.ranges} range(s), ${report.rows} rows compared by checksum in ${(report.ms / 1000).toFixed(1)} s`;
  const threshold = `every table's rows equal on both sides (${what})`;
  const flux = report.inFlux ?? [];
  if (report.mismatches.length === 0 && report.incomplete) {
    return check("verify.data", "WARN", {
      measured: `${measured}, then stopped: the rest was not compared`,
      threshold,
      message: `every range compared holds the same rows, but the comparison ran out of time before the end (${what})`,
      remedy: "pgshift ctl verify ID compares the rest on demand (REPLICATING, READY_FOR_CUTOVER or COMPLETED)",
    });
  }
  if (report.mismatches.length === 0 && flux.length === 0)
    return check("verify.data", "PASS", {
      measured,
      threshold,
      message: `source and target hold the same rows (${what})`,
    });
  if (report.mismatches.length === 0) {
    return check("verify.data", "WARN", {
      measured: `${measured}; written throughout, not compared: ${flux.slice(0, 20).join("; ")}${flux.length > 20 ? `; and ${flux.length - 20} more` : ""}`,
      threshold,
      message: `every range compared holds the same rows; ${flux.length} range(s) changed at every look and could not be compared (${what})`,
      remedy: "compare again when the application writes less there",
    });
  }
  const known = report.mismatches.filter((m) => expected.includes(`${m.database}.${m.table}`));
  const unknown = report.mismatches.filter((m) => !known.includes(m));
  if (unknown.length === 0) {
    return check("verify.data", "WARN", {
      measured: `${measured}; differ only where a rollback carries inserts alone (rollback.coverage): ${listMismatches(known)}`,
      threshold,
      message: `${known.length} range(s) of tables without a replica identity differ: their updates and deletes on the target were not carried back`,
      remedy: "nothing was lost elsewhere; reconcile those tables by hand if their changes on the target matter",
    });
  }
  return check("verify.data", "FAIL", {
    measured: `${measured}; differ: ${listMismatches(unknown)}${known.length ? `; also, as rollback.coverage said: ${listMismatches(known)}` : ""}`,
    threshold,
    message: `${unknown.length} range(s) differ between source and target (${what})`,
    remedy: "inspect the named ranges on both sides before finalizing; a rollback (or finalize) is an operator's call",
  });
}

/** The verdict when the snapshots to compare were lost (the service restarted between taking and reading them). */
export function dataVerdictLost(what: string): CheckResult {
  return check("verify.data", "WARN", {
    measured: "not compared: the snapshots for it could not be taken, or were lost (the service restarted in between)",
    threshold: `every table's rows equal on both sides (${what})`,
    message: "source and target were not compared this time",
    remedy: "compare the tables that matter by hand (the target and the source are both still there until finalize)",
  });
}
