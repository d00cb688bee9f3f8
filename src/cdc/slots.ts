import type { Sql } from "../providers/sql.js";
import { DeadlineExceededError, FailedPreconditionError } from "../domain/errors.js";
import { lsnAtLeast, lsnDiff, lsnFromBigInt, lsnMax, lsnToBigInt } from "../domain/lsn.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import { sleep } from "../support/sleep.js";

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

export async function logicalSlotsOn(c: Sql): Promise<LogicalSlot[]> {
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
      (
        await c.query<{ p: string }>(
          "select pubname as p from pg_publication where left(pubname, length($1)) <> $1 order by 1",
          [OWN_PREFIX],
        )
      ).rows.map((r) => r.p),
    );
}

/** Ends the walsenders reading the named slots and waits until none does. Idempotent. */
export async function endReaders(provider: Provider, ref: InstanceRef, names: string[]): Promise<void> {
  if (names.length === 0) return;
  await provider.sql(ref).session((c) => endReadersOn(c, ref, names));
}

export async function endReadersOn(c: Sql, ref: InstanceRef, names: string[]): Promise<void> {
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

/** One slot at a hand-over: what its consumer confirmed, and what its walsender had sent. */
export interface HandedOver {
  name: string;
  database: string;
  confirmed: string | null;
  /** The walsender's sent position; null when no reader was connected. */
  sent: string | null;
}

/**
 * A hand-over without waiting on consumers: waits (at most `boundMs`) until
 * each connected walsender of the named slots has *sent* everything up to
 * `lsn` (it pushes WAL on its own; a healthy stream takes milliseconds) and
 * returns where each stands. Ends nothing: the caller records the positions,
 * then ends the readers (what was sent is in the socket and is delivered
 * before the close). Throws DeadlineExceededError if a reader had not been
 * sent `lsn` in time (a consumer so slow that its socket is full).
 */
export async function waitSent(
  provider: Provider,
  ref: InstanceRef,
  names: string[],
  lsn: string,
  boundMs: number,
  signal?: AbortSignal,
): Promise<HandedOver[]> {
  if (names.length === 0) return [];
  return provider.sql(ref).session((c) => waitSentOn(c, ref, names, lsn, boundMs, signal));
}

/** waitSent on a connection the caller holds (the cutover's hand-over runs on one, in the window). */
export async function waitSentOn(
  c: Sql,
  ref: InstanceRef,
  names: string[],
  lsn: string,
  boundMs: number,
  signal?: AbortSignal,
): Promise<HandedOver[]> {
  if (names.length === 0) return [];
  const deadline = Date.now() + boundMs;
  while (true) {
    const rows = (
      await c.query<{
        slot_name: string;
        database: string;
        confirmed: string | null;
        pid: number | null;
        sent: string | null;
      }>(
        `select s.slot_name, s.database, s.confirmed_flush_lsn::text as confirmed, s.active_pid as pid, r.sent_lsn::text as sent
           from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid
          where s.slot_name = any($1)`,
        [names],
      )
    ).rows;
    const missing = names.filter((n) => !rows.some((r) => r.slot_name === n));
    if (missing.length > 0)
      throw new FailedPreconditionError(
        `logical slot(s) ${missing.join(", ")} disappeared from ${ref.id} during the hand-over`,
      );
    const behind = rows.filter((r) => r.pid !== null && (!r.sent || !lsnAtLeast(r.sent, lsn)));
    if (behind.length === 0)
      return rows.map((r) => ({
        name: r.slot_name,
        database: r.database,
        confirmed: r.confirmed,
        sent: r.pid === null ? null : r.sent,
      }));
    if (Date.now() > deadline || signal?.aborted) {
      const list = behind.map((b) => `${b.slot_name} sent up to ${b.sent ?? "nothing"}`).join(", ");
      throw new DeadlineExceededError(
        `the streams of ${list} on ${ref.id} had not been sent ${lsn} within ${boundMs} ms`,
      );
    }
    await sleep(2, signal ?? NEVER);
  }
}

/** Prefix test_decoding gives our own WAL-fill messages; they are not anybody's change. */
const OWN_MESSAGE = "message: transactional: _ prefix: pgshift,%";

/**
 * How many changes a slot would still stream before `upto` (row changes,
 * transaction boundaries and others' messages), read through a temporary
 * copy: the slot itself does not move. For a slot nobody reads at the fence.
 */
export async function unreadChanges(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  slot: string,
  upto: string,
): Promise<number> {
  return provider.sql(ref, database).session(async (c) => {
    const copy = await copyOf(c, slot, "test_decoding");
    try {
      const r = await c.query<{ n: number }>(
        `select count(*)::int as n from pg_logical_slot_peek_changes($1, $2::pg_lsn, null, 'skip-empty-xacts', '1') where data not like $3`,
        [copy, upto, OWN_MESSAGE],
      );
      return r.rows[0]!.n;
    } finally {
      await c.query("select pg_drop_replication_slot($1)", [copy]);
    }
  });
}

let copies = 0;
async function copyOf(c: Sql, slot: string, plugin: string): Promise<string> {
  const name = `${OWN_PREFIX}peek_${process.pid}_${++copies}`;
  await c.query("select pg_copy_logical_replication_slot($1, $2, true, $3)", [slot, name, plugin]);
  return name;
}

/**
 * Where to put a source slot kept since cutover so that its consumer, who
 * read the promoted target up to `readOnTarget`, gets from the source exactly
 * the target's transactions it had not read: reverse replication applied each
 * of them on the source as one transaction whose commit carries the target's
 * commit end as its replication origin LSN. Decodes a temporary copy of the
 * slot (pgoutput, through reverse replication's publication) from `from`,
 * where the consumer left the source at cutover. Returns the end of the last
 * source transaction the consumer already has, or `from`.
 */
export async function positionForTargetProgress(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  slot: string,
  from: string,
  readOnTarget: string,
  publication: string,
): Promise<{ lsn: string; skipped: number; toStream: number }> {
  return provider.sql(ref, database).session(async (c) => {
    const copy = await copyOf(c, slot, "pgoutput");
    try {
      const at = (
        await c.query<{ l: string }>(
          "select confirmed_flush_lsn::text as l from pg_replication_slots where slot_name = $1",
          [copy],
        )
      ).rows[0]!.l;
      // What the consumer had at cutover is passed over without decoding it for output.
      if (!lsnAtLeast(at, from)) await c.query("select pg_replication_slot_advance($1, $2::pg_lsn)", [copy, from]);
      // Only transaction boundaries and origins are needed: B(egin), O(rigin), C(ommit).
      const rows = (
        await c.query<{ d: Buffer }>(
          `select substring(data from 1 for 26) as d from pg_logical_slot_peek_binary_changes($1, null, null, 'proto_version', '1', 'publication_names', $2)
            where get_byte(data, 0) in (66, 67, 79)`,
          [copy, publication],
        )
      ).rows;
      const limit = lsnToBigInt(readOnTarget);
      let lsn = from;
      let skipped = 0;
      let toStream = 0;
      let origin: bigint | undefined;
      for (const { d } of rows) {
        const tag = String.fromCharCode(d[0]!);
        if (tag === "B") origin = undefined;
        else if (tag === "O") origin = d.readBigUInt64BE(1);
        else if (tag === "C") {
          // Commit: flags (1 byte), commit LSN, end LSN.
          // A transaction of the source's own (no origin) was never on the target: it streams, and so does all after it.
          if (toStream > 0 || origin === undefined || origin > limit) toStream++;
          else {
            skipped++;
            lsn = lsnFromBigInt(d.readBigUInt64BE(10));
          }
        }
      }
      return { lsn, skipped, toStream };
    } finally {
      await c.query("select pg_drop_replication_slot($1)", [copy]);
    }
  });
}

/** Moves a slot nobody reads forward to `lsn` (never back). Returns where it is. */
export async function advanceSlot(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  slot: string,
  lsn: string,
): Promise<string> {
  return provider.sql(ref, database).session(async (c) => {
    const at = (
      await c.query<{ l: string | null }>(
        "select confirmed_flush_lsn::text as l from pg_replication_slots where slot_name = $1",
        [slot],
      )
    ).rows[0];
    if (!at) throw new FailedPreconditionError(`${ref.id} has no slot ${slot} to move to ${lsn}`);
    if (at.l && lsnAtLeast(at.l, lsn)) return at.l;
    const r = await c.query<{ end_lsn: string }>(
      "select end_lsn::text from pg_replication_slot_advance($1, $2::pg_lsn)",
      [slot, lsn],
    );
    return r.rows[0]!.end_lsn;
  });
}

/** WAL each named slot holds back on the instance (bytes from its restart_lsn to the current position). */
export async function retainedWal(provider: Provider, ref: InstanceRef, names: string[]): Promise<Map<string, bigint>> {
  const r = await provider
    .sql(ref)
    .query<{ slot_name: string; b: string | null }>(
      "select slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text as b from pg_replication_slots where slot_name = any($1)",
      [names],
    );
  return new Map(r.rows.map((x) => [x.slot_name, BigInt(x.b ?? "0")]));
}

/** The named slots that a walsender reads now. */
export async function readSlots(provider: Provider, ref: InstanceRef, names: string[]): Promise<string[]> {
  const r = await provider
    .sql(ref)
    .query<{ slot_name: string }>("select slot_name from pg_replication_slots where slot_name = any($1) and active", [
      names,
    ]);
  return r.rows.map((x) => x.slot_name);
}

/**
 * Moves the instance's WAL position to at least `lsn` with records no
 * logical decoding turns into output (a restore point and a segment switch
 * per round), for an instance whose slots are placed below that point and
 * will be read: a consumer sees nothing of ours.
 */
export async function skipWalTo(provider: Provider, ref: InstanceRef, lsn: string): Promise<string> {
  return provider.sql(ref).session(async (c) => {
    for (let i = 0; i < 1024; i++) {
      const now = (await c.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
      if (lsnAtLeast(now, lsn)) return now;
      await c.query("select pg_create_restore_point('pgshift'), pg_switch_wal()");
    }
    throw new FailedPreconditionError(`${ref.id} is more than 1024 WAL segments behind ${lsn}`);
  });
}

/**
 * A consumer that resumes on another instance passes the last LSN it saw, and
 * the server skips transactions that commit below it: the new instance's
 * stream must start above everything the consumer saw on the old one. Each
 * round writes a tiny record and switches to the next segment; used before a
 * slot is created there, so nobody decodes these records.
 */
/** Small gaps take one padded record; large ones, segment switches (cheaper than megabytes of padding). */
const PAD_LIMIT = 1 << 20;

async function fillWalOn(c: Sql, ref: InstanceRef, lsn: string): Promise<string> {
  for (let i = 0; i < 1024; i++) {
    const now = (await c.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
    const gap = lsnDiff(lsn, now);
    if (gap <= 0n) return now;
    if (gap <= BigInt(PAD_LIMIT))
      await c.query("select pg_logical_emit_message(false, 'pgshift', repeat('x', $1::int))", [Number(gap)]);
    else await c.query("select pg_logical_emit_message(false, 'pgshift', 'wal fill'), pg_switch_wal()");
  }
  throw new FailedPreconditionError(
    `${ref.id} is more than 1024 WAL segments behind ${lsn}; CDC consumers cannot resume there without skipping changes`,
  );
}

/**
 * On the promoted target, for one database, before traffic: checks that the
 * publications came over, moves the WAL past `floor`, and creates each slot.
 * One connection. Returns each slot's consistent point, and whether the
 * target's positions continue the source's: a target that replayed the
 * source's WAL up to `replayedTo` and continues its positions is at or past
 * it; one below it counts in a space of its own (a promoted Aurora cluster
 * need not continue its RDS source's). There, moving the WAL past positions
 * of the other space would be meaningless (and unbounded), so it is not
 * done: consumers re-anchor at the slot's position instead.
 */
export async function restoreSlotsIn(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  wanted: Array<{ name: string; plugin: string; publications: string[] }>,
  floor: string,
  replayedTo: string,
): Promise<{ at: Map<string, string>; continuous: boolean }> {
  return provider.sql(ref, database).session(async (c) => {
    const there = (await c.query<{ p: string }>("select pubname as p from pg_publication")).rows.map((r) => r.p);
    const missing = [...new Set(wanted.flatMap((w) => w.publications))].filter((p) => !there.includes(p));
    if (missing.length > 0)
      throw new FailedPreconditionError(
        `publication(s) ${missing.join(", ")} of ${database} are not on ${ref.id}; the target is not a copy of the source`,
      );
    const now = (await c.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
    const continuous = lsnAtLeast(now, replayedTo);
    if (continuous) await fillWalOn(c, ref, floor);
    const at = new Map<string, string>();
    for (const w of wanted) at.set(w.name, await ensureSlotOn(c, ref, database, w.name, w.plugin));
    return { at, continuous };
  });
}

/**
 * A logical slot with this name and plugin in `database`, created if absent.
 * Returns its consistent point (confirmed_flush_lsn). A slot of that name with
 * another plugin or database is somebody else's and is refused.
 */
export async function ensureSlot(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  name: string,
  plugin: string,
): Promise<string> {
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
  const r = await c.query<{ lsn: string }>("select lsn::text from pg_create_logical_replication_slot($1, $2)", [
    name,
    plugin,
  ]);
  return r.rows[0]!.lsn;
}

/**
 * Puts a slot's consistent point at `lsn` or later: advanced if it exists
 * (its readers ended first), created otherwise. Returns where it now is.
 */
export async function repositionSlot(
  provider: Provider,
  ref: InstanceRef,
  database: string,
  name: string,
  plugin: string,
  lsn: string,
): Promise<string> {
  await endReaders(provider, ref, [name]);
  const at = await ensureSlot(provider, ref, database, name, plugin);
  if (lsnAtLeast(at, lsn)) return at;
  return provider.sql(ref, database).session(async (c) => {
    const r = await c.query<{ end_lsn: string }>(
      "select end_lsn::text from pg_replication_slot_advance($1, $2::pg_lsn)",
      [name, lsn],
    );
    return lsnMax(r.rows[0]!.end_lsn, lsn);
  });
}

/** Drops the named logical slots, ending their readers first. Idempotent. */
export async function dropSlots(provider: Provider, ref: InstanceRef, names: string[]): Promise<void> {
  if (names.length === 0) return;
  await endReaders(provider, ref, names);
  await provider.sql(ref).session(async (c) => {
    await c.query(
      "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = any($1) and not active",
      [names],
    );
  });
}
