import type { Sql } from "../providers/sql.js";
import { DeadlineExceededError, FailedPreconditionError } from "../domain/errors.js";
import { lsnAtLeast, lsnDiff, lsnMax } from "../domain/lsn.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import { sleep } from "../domain/sleep.js";

/**
 * Logical replication slots as SQL sees them, on any provider: everything
 * here goes through the instance's admin connection, so it is the same on
 * RDS, Aurora and local clusters.
 */
export interface LogicalSlot {
  name: string;
  plugin: string;
  database: string;
  confirmedFlushLsn: string | null;
  restartLsn: string | null;
  active: boolean;
  /** application_name@client address of the walsender reading it, if one does. */
  consumer: string | null;
}

const NEVER = new AbortController().signal;

/** Slots of our own (reverse replication) are not anybody's change stream. */
const OWN_PREFIX = "pgshift_";

export async function logicalSlots(provider: Provider, ref: InstanceRef): Promise<LogicalSlot[]> {
  return provider.sql(ref).session((c) => logicalSlotsOn(c));
}

async function logicalSlotsOn(c: Sql): Promise<LogicalSlot[]> {
  const r = await c.query<{
    slot_name: string;
    plugin: string;
    database: string;
    confirmed: string | null;
    restart: string | null;
    active: boolean;
    app: string | null;
    addr: string | null;
  }>(
    `select s.slot_name, s.plugin, s.database, s.confirmed_flush_lsn::text as confirmed, s.restart_lsn::text as restart, s.active,
            a.application_name as app, coalesce(a.client_addr::text, 'local') as addr
       from pg_replication_slots s left join pg_stat_activity a on a.pid = s.active_pid
      where s.slot_type = 'logical' and left(s.slot_name, length($1)) <> $1
      order by s.slot_name`,
    [OWN_PREFIX],
  );
  return r.rows.map((s) => ({
    name: s.slot_name,
    plugin: s.plugin,
    database: s.database,
    confirmedFlushLsn: s.confirmed,
    restartLsn: s.restart,
    active: s.active,
    consumer: s.active ? `${s.app || "?"}@${s.addr}` : null,
  }));
}

export async function publications(provider: Provider, ref: InstanceRef, database: string): Promise<string[]> {
  return provider
    .sql(ref, database)
    .session(async (c) =>
      (await c.query<{ p: string }>("select pubname as p from pg_publication where left(pubname, length($1)) <> $1 order by 1", [OWN_PREFIX])).rows.map(
        (r) => r.p,
      ),
    );
}

/**
 * Waits until every named slot's consumer confirmed `lsn`: all it was sent
 * before that point is safely downstream. Throws DeadlineExceededError naming
 * each laggard with its position.
 */
export async function waitConfirmed(
  provider: Provider,
  ref: InstanceRef,
  names: string[],
  lsn: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  if (names.length === 0) return;
  await provider.sql(ref).session((c) => waitConfirmedOn(c, ref, names, lsn, timeoutMs, signal));
}

async function waitConfirmedOn(c: Sql, ref: InstanceRef, names: string[], lsn: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const rows = (
      await c.query<{ slot_name: string; confirmed: string | null; active: boolean }>(
        "select slot_name, confirmed_flush_lsn::text as confirmed, active from pg_replication_slots where slot_name = any($1)",
        [names],
      )
    ).rows;
    const missing = names.filter((n) => !rows.some((r) => r.slot_name === n));
    if (missing.length > 0) throw new FailedPreconditionError(`logical slot(s) ${missing.join(", ")} disappeared from ${ref.id} while their consumers drained`);
    const behind = rows.filter((r) => !r.confirmed || !lsnAtLeast(r.confirmed, lsn));
    if (behind.length === 0) return;
    if (Date.now() > deadline) {
      const list = behind.map((b) => `${b.slot_name} at ${b.confirmed ?? "nothing"}${b.active ? "" : " (no consumer connected)"}`).join(", ");
      throw new DeadlineExceededError(`CDC consumers did not confirm ${lsn} on ${ref.id} within ${timeoutMs} ms: ${list}`);
    }
    if (signal?.aborted) throw new DeadlineExceededError("stopped while CDC consumers drained");
    await sleep(5, signal ?? NEVER);
  }
}

/** Ends the walsenders reading the named slots and waits until none does. Idempotent. */
export async function endReaders(provider: Provider, ref: InstanceRef, names: string[]): Promise<void> {
  if (names.length === 0) return;
  await provider.sql(ref).session((c) => endReadersOn(c, ref, names));
}

async function endReadersOn(c: Sql, ref: InstanceRef, names: string[]): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    const r = await c.query<{ n: number }>(
      "select count(pg_terminate_backend(active_pid))::int as n from pg_replication_slots where slot_name = any($1) and active_pid is not null",
      [names],
    );
    if (r.rows[0]!.n === 0) return;
    await sleep(5, NEVER);
  }
  throw new DeadlineExceededError(`the readers of ${names.join(", ")} on ${ref.id} did not stop within 5 s`);
}

/**
 * The cutover's drain on one connection (it runs while writes are stopped):
 * waits until every slot confirmed `lsn`, ends their readers, and returns the
 * slots as they are then with the instance's WAL position at that moment,
 * past which no reader saw anything.
 */
export async function drainAndEndReaders(
  provider: Provider,
  ref: InstanceRef,
  names: string[],
  lsn: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ slots: LogicalSlot[]; endLsn: string }> {
  return provider.sql(ref).session(async (c) => {
    await waitConfirmedOn(c, ref, names, lsn, timeoutMs, signal);
    await endReadersOn(c, ref, names);
    const slots = (await logicalSlotsOn(c)).filter((s) => names.includes(s.name));
    const endLsn = (await c.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
    return { slots, endLsn };
  });
}

/**
 * Moves the instance's WAL insert position to at least `lsn`. A consumer
 * that resumes on another instance passes the last LSN it saw, and the server
 * skips transactions that commit below it: the new instance's stream must
 * start above everything the consumer saw on the old one. Each round writes a
 * tiny record and switches to the next segment.
 */
export async function fillWalTo(provider: Provider, ref: InstanceRef, lsn: string, database?: string): Promise<string> {
  return provider.sql(ref, database).session((c) => fillWalOn(c, ref, lsn));
}

/** Small gaps take one padded record; large ones, segment switches (cheaper than megabytes of padding). */
const PAD_LIMIT = 1 << 20;

async function fillWalOn(c: Sql, ref: InstanceRef, lsn: string): Promise<string> {
  for (let i = 0; i < 1024; i++) {
    const now = (await c.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
    const gap = lsnDiff(lsn, now);
    if (gap <= 0n) return now;
    if (gap <= BigInt(PAD_LIMIT)) await c.query("select pg_logical_emit_message(false, 'pgshift', repeat('x', $1::int))", [Number(gap)]);
    else await c.query("select pg_logical_emit_message(false, 'pgshift', 'wal fill'), pg_switch_wal()");
  }
  throw new FailedPreconditionError(`${ref.id} is more than 1024 WAL segments behind ${lsn}; CDC consumers cannot resume there without skipping changes`);
}

/**
 * On the promoted target, for one database, before traffic: checks that the
 * publications came over, moves the WAL past `floor`, and creates each slot.
 * One connection. Returns each slot's consistent point.
 */
export async function restoreSlotsIn(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  wanted: Array<{ name: string; plugin: string; publications: string[] }>,
  floor: string,
): Promise<Map<string, string>> {
  return provider.sql(ref, database).session(async (c) => {
    const there = (await c.query<{ p: string }>("select pubname as p from pg_publication")).rows.map((r) => r.p);
    const missing = [...new Set(wanted.flatMap((w) => w.publications))].filter((p) => !there.includes(p));
    if (missing.length > 0)
      throw new FailedPreconditionError(`publication(s) ${missing.join(", ")} of ${database} are not on ${ref.id}; the target is not a copy of the source`);
    await fillWalOn(c, ref, floor);
    const out = new Map<string, string>();
    for (const w of wanted) out.set(w.name, await ensureSlotOn(c, ref, database, w.name, w.plugin));
    return out;
  });
}

/**
 * A logical slot with this name and plugin in `database`, created if absent.
 * Returns its consistent point (confirmed_flush_lsn). A slot of that name with
 * another plugin or database is somebody else's and is refused.
 */
export async function ensureSlot(provider: Provider, ref: InstanceRef, database: string, name: string, plugin: string): Promise<string> {
  return provider.sql(ref, database).session((c) => ensureSlotOn(c, ref, database, name, plugin));
}

async function ensureSlotOn(c: Sql, ref: InstanceRef, database: string, name: string, plugin: string): Promise<string> {
  const existing = (
    await c.query<{ plugin: string; database: string; confirmed: string }>(
      "select plugin, database, confirmed_flush_lsn::text as confirmed from pg_replication_slots where slot_name = $1",
      [name],
    )
  ).rows[0];
  if (existing) {
    if (existing.plugin !== plugin || existing.database !== database) {
      throw new FailedPreconditionError(
        `${ref.id} already has a slot ${name} (plugin ${existing.plugin}, database ${existing.database}), not the ${plugin} slot in ${database} its consumers need; drop it there or rename it`,
      );
    }
    return existing.confirmed;
  }
  const r = await c.query<{ lsn: string }>("select lsn::text from pg_create_logical_replication_slot($1, $2)", [name, plugin]);
  return r.rows[0]!.lsn;
}

/**
 * Puts a slot's consistent point at `lsn` or later: advanced if it exists
 * (its readers ended first), created otherwise. Returns where it now is.
 */
export async function repositionSlot(provider: Provider, ref: InstanceRef, database: string, name: string, plugin: string, lsn: string): Promise<string> {
  await endReaders(provider, ref, [name]);
  const at = await ensureSlot(provider, ref, database, name, plugin);
  if (lsnAtLeast(at, lsn)) return at;
  return provider.sql(ref, database).session(async (c) => {
    const r = await c.query<{ end_lsn: string }>("select end_lsn::text from pg_replication_slot_advance($1, $2::pg_lsn)", [name, lsn]);
    return lsnMax(r.rows[0]!.end_lsn, lsn);
  });
}

/** Drops the named logical slots, ending their readers first. Idempotent. */
export async function dropSlots(provider: Provider, ref: InstanceRef, names: string[]): Promise<void> {
  if (names.length === 0) return;
  await endReaders(provider, ref, names);
  await provider.sql(ref).session(async (c) => {
    await c.query("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = any($1) and not active", [names]);
  });
}
