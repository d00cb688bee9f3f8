import { check, type CheckResult } from "../domain/check.js";
import type { Sql } from "../providers/sql.js";

/** A session or prepared transaction that a fence now would cut short, or carry over half done. */
export interface GuardrailBlocker {
  /** "long transaction", "idle in transaction", "DDL in progress" or "prepared transaction". */
  kind: string;
  pid?: number;
  user: string;
  database: string;
  application?: string;
  /** How long its transaction has been open (ms). */
  ageMs: number;
  /** Its current or last statement, or the prepared transaction's gid. */
  what: string;
}

/** A session between two statements of a short transaction is idle in it for a moment: only this long counts. */
const IDLE_IN_TRANSACTION_MS = 1_000;

/**
 * What holds a cutover on the source now: client sessions (not pgshift's own, not walsenders) whose transaction is
 * older than maxAgeMs, idle in a transaction, or holding or awaiting an ACCESS EXCLUSIVE lock (DDL); and every
 * prepared transaction. One statement.
 */
export async function readGuardrailBlockers(sql: Sql, maxAgeMs: number): Promise<GuardrailBlocker[]> {
  const r = await sql.query<{
    kind: string;
    pid: number | null;
    usr: string;
    db: string;
    app: string | null;
    age_ms: number;
    what: string;
  }>(
    `select case when exists (select 1 from pg_locks l where l.pid = a.pid and l.locktype = 'relation' and l.mode = 'AccessExclusiveLock')
                 then 'DDL in progress'
                 when a.state like 'idle in transaction%' then 'idle in transaction'
                 else 'long transaction' end as kind,
            a.pid, coalesce(a.usename::text, '') as usr, coalesce(a.datname::text, '') as db, a.application_name as app,
            (extract(epoch from clock_timestamp() - a.xact_start) * 1000)::float8 as age_ms, left(coalesce(a.query, ''), 200) as what
       from pg_stat_activity a
      where a.backend_type = 'client backend' and a.pid <> pg_backend_pid() and a.application_name is distinct from 'pgshift-admin'
        and a.xact_start is not null
        and (clock_timestamp() - a.xact_start > $1 * interval '1 millisecond'
             or (a.state like 'idle in transaction%' and clock_timestamp() - a.state_change > $2 * interval '1 millisecond')
             or exists (select 1 from pg_locks l where l.pid = a.pid and l.locktype = 'relation' and l.mode = 'AccessExclusiveLock'))
     union all
     select 'prepared transaction', null, owner::text, database::text, null,
            (extract(epoch from clock_timestamp() - prepared) * 1000)::float8, gid
       from pg_prepared_xacts
     order by age_ms desc`,
    [maxAgeMs, Math.min(maxAgeMs, IDLE_IN_TRANSACTION_MS)],
  );
  return r.rows.map((b) => ({
    kind: b.kind,
    pid: b.pid ?? undefined,
    user: b.usr,
    database: b.db,
    application: b.app ?? undefined,
    ageMs: Math.round(b.age_ms),
    what: b.what,
  }));
}

export function describeBlocker(b: GuardrailBlocker): string {
  const who = b.pid === undefined ? `gid ${b.what}` : `pid ${b.pid}`;
  const stmt = b.pid === undefined ? "" : `: ${JSON.stringify(b.what)}`;
  return `${b.kind} ${who} (user ${b.user}, database ${b.database}${b.application ? `, application ${b.application}` : ""}, open ${(b.ageMs / 1000).toFixed(1)} s)${stmt}`;
}

/** The guardrails' verdict: PASS when nothing holds the cutover, else WARN while it waits and FAIL once it refuses. */
export function guardrailCheck(
  blockers: GuardrailBlocker[],
  maxAgeMs: number,
  maxWaitMs: number,
  waitedMs: number,
  refused: boolean,
): CheckResult {
  const threshold = `no transaction open over ${maxAgeMs / 1000} s, none idle in a transaction, no DDL in progress, no prepared transaction; waiting at most ${maxWaitMs / 1000} s (spec.guardrails)`;
  if (blockers.length === 0) {
    return check("cutover.guardrails", "PASS", {
      measured: `nothing holds the cutover${waitedMs > 0 ? ` after waiting ${(waitedMs / 1000).toFixed(1)} s` : ""}`,
      threshold,
    });
  }
  const measured = blockers.map(describeBlocker).join("; ");
  if (!refused) {
    return check("cutover.guardrails", "WARN", {
      measured,
      threshold,
      message: `the cutover waits, before fencing ${blockers.length === 1 ? "the source, for this work" : `the source, for these ${blockers.length}`} to end: a fence now would end them half done`,
      remedy: "let them finish, or end them yourself (pg_terminate_backend, COMMIT/ROLLBACK PREPARED)",
    });
  }
  return check("cutover.guardrails", "FAIL", {
    measured,
    threshold,
    message: `the cutover was refused: after ${(waitedMs / 1000).toFixed(1)} s the source still had work a fence would cut short; nothing was fenced`,
    remedy:
      "finish or end the named sessions and prepared transactions (pg_terminate_backend(pid), COMMIT/ROLLBACK PREPARED gid), or raise spec.guardrails, then ResumeMigration and approve again",
  });
}
