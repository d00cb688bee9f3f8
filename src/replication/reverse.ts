import { DeadlineExceededError, FailedPreconditionError, unlessGone } from "../domain/errors.js";
import { lsnAtLeast } from "../domain/lsn.js";
import { keepOutOfServerLog } from "../postgres/unlogged-statements.js";
import { sqlLiteral } from "../providers/connect.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import type { PeerConnection, Sql } from "../providers/sql.js";
import type { SchemaInventory } from "../domain/schema-inventory.js";
import { namesTable } from "../domain/spec.js";
import { removeDdlCapture } from "./ddl-capture.js";

/**
 * Reverse replication, for a lossless rollback: from promotion on, every
 * database's changes on the promoted target flow back to the fenced source
 * through a logical publication on the target and a subscription on the
 * source (copy_data off: the source has everything up to promotion already).
 *
 * Limits: DDL does not replicate (a schema change on the target after
 * promotion is detected and holds a rollback); sequences and large objects do
 * not replicate, so they are carried over on rollback; a table without a
 * replica identity has its inserts carried only; unlogged tables not at all.
 */
const NAME = "pgshift_reverse";
/** Tables without a replica identity go in a publication of their own that publishes inserts and truncates only. */
const INSERTS = `${NAME}_inserts`;
const PUBLICATIONS = `${NAME}, ${INSERTS}`;

/** Which tables of a database each publication lists (names as PostgreSQL prints them). */
export interface ReversePublication {
  database: string;
  /** Every change carried: tables with a primary key, a replica identity index or REPLICA IDENTITY FULL. */
  all: string[];
  /** Inserts and truncates only: tables without a replica identity. */
  inserts: string[];
}

function createPublication(name: string, tables: string[], publish: string): string {
  return `create publication ${name}${tables.length ? ` for table ${tables.join(", ")}` : ""} with (publish = '${publish}')`;
}

/**
 * The publications of one database, made anew in one transaction (before cutover nothing subscribes to them). A
 * publication that publishes updates and deletes makes UPDATE and DELETE fail on a table without a replica
 * identity, on the server and its replicas: so those tables are published for inserts only, and no statement the
 * application runs is refused at any phase. Unlogged and foreign tables cannot be published.
 */
async function publish(sql: Sql, p: ReversePublication): Promise<void> {
  await sql.query(
    `begin;
     drop publication if exists ${NAME};
     drop publication if exists ${INSERTS};
     ${createPublication(NAME, p.all, "insert, update, delete, truncate")};
     ${createPublication(INSERTS, p.inserts, "insert, truncate")};
     commit;`,
  );
}

function conninfo(c: PeerConnection, extra = ""): string {
  const q = (v: unknown) => `'${String(v).replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  const ssl = c.sslmode ? ` sslmode=${q(c.sslmode)}` : "";
  return `host=${q(c.host)} port=${q(c.port)} user=${q(c.user)} password=${q(c.password)} dbname=${q(c.database)}${ssl}${extra}`;
}

const PROBE = `${NAME}_probe`;

/**
 * Before cutover, with the source still the primary: the source connects to the replica as reverse replication
 * will once it is promoted (the same connection string, by CREATE SUBSCRIPTION with connect on, but no slot and
 * disabled), then the probe subscription is dropped. A missing network path or credentials the target refuses show
 * now, rather than in PROMOTING with the source fenced. Returns the error, or undefined when the path works.
 */
export async function probeReversePath(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  dbs: string[],
): Promise<string | undefined> {
  const db = dbs[0];
  if (!db) return undefined;
  const tgt = await provider.peerConnection(target, db);
  return provider.sql(source, db).session(async (c) => {
    // The statement carries a password.
    await keepOutOfServerLog(c);
    // Left by a probe a crash interrupted: it holds no slot, so dropping it touches nothing on the target.
    await c.query(`drop subscription if exists ${PROBE}`);
    try {
      await c.query(
        `create subscription ${PROBE} connection ${sqlLiteral(conninfo(tgt, " connect_timeout=10"))} publication ${PUBLICATIONS}
           with (connect = true, enabled = false, create_slot = false, slot_name = NONE, copy_data = false)`,
      );
    } catch (e) {
      return (e as Error).message;
    }
    await c.query(`drop subscription ${PROBE}`);
    return undefined;
  });
}

/**
 * Before cutover: publications on the source for every database with tables, listing its tables as they are now
 * (called again right before the fence, so a table created meanwhile is in). They are catalog, not data, and reach
 * the target through physical replication, so nothing needs creating on the target in the cutover window.
 * Idempotent. Returns what each database publishes.
 */
export async function prepareReverseReplication(
  provider: Provider,
  source: InstanceRef,
  inventory: SchemaInventory,
  identityFull: readonly string[] = [],
): Promise<ReversePublication[]> {
  const out: ReversePublication[] = [];
  for (const d of inventory.databases) {
    if (d.identified.length + d.keyless.length === 0) continue;
    const sql = provider.sql(source, d.database);
    const full = d.keyless.filter((t) => namesTable(identityFull, d.database, t));
    // The spec's choice for these tables: every change carried back, at the cost of whole old rows in the WAL.
    // A short lock wait: behind a long transaction the ALTER would queue the application's statements behind it.
    for (const t of full) await sql.query(`set lock_timeout = '2s'; alter table ${t} replica identity full`);
    const p = {
      database: d.database,
      all: [...d.identified, ...full].sort(),
      inserts: d.keyless.filter((t) => !full.includes(t)),
    };
    await publish(sql, p);
    out.push(p);
  }
  return out;
}

/**
 * After promotion, before traffic: reverse replication's slot on the target, per database. Every change the target
 * makes from here on is kept for the source, whenever the subscription attaches (startReverseReplication, after
 * routing): one statement per database in the window instead of a subscription's set-up. Idempotent.
 */
export async function reserveReverseSlots(provider: Provider, target: InstanceRef, dbs: string[]): Promise<void> {
  await Promise.all(
    dbs.map((db) =>
      provider
        .sql(target, db)
        .query(
          "select pg_create_logical_replication_slot($1, 'pgoutput') where not exists (select 1 from pg_replication_slots where slot_name = $1)",
          [slotName(db)],
        ),
    ),
  );
}

/**
 * A subscription on the source to the target's publication, per database, on the slot reserved at promotion (or a
 * new one, for a slot never reserved: nothing has reached the target yet then). Idempotent.
 */
export async function startReverseReplication(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  dbs: string[],
): Promise<void> {
  for (const db of dbs) {
    const tgt = await provider.peerConnection(target, db);
    const reserved =
      (await provider.sql(target, db).query("select 1 from pg_replication_slots where slot_name = $1", [slotName(db)]))
        .rows.length > 0;
    await provider.sql(source, db).session(async (c) => {
      // pg_subscription is shared by every database: ours is the one in this database.
      const has = await c.query(
        "select 1 from pg_subscription s join pg_database d on d.oid = s.subdbid where s.subname = $1 and d.datname = current_database()",
        [NAME],
      );
      if (has.rowCount === 0) {
        // A subscription cannot be created inside a transaction block; pg runs each query on its own.
        // The statement carries a password.
        await keepOutOfServerLog(c);
        await c.query(`create subscription ${NAME} connection ${sqlLiteral(conninfo(tgt))} publication ${PUBLICATIONS}
                       with (copy_data = false, create_slot = ${!reserved}, slot_name = ${sqlLiteral(slotName(db))}, enabled = true)`);
      }
    });
  }
}

export function slotName(db: string): string {
  return `${NAME}_${db.toLowerCase().replace(/[^a-z0-9_]/g, "_")}`.slice(0, 63);
}

/**
 * Tables that came to be on the target after the publications were made (a CREATE TABLE after promotion, once the
 * source has the same table): added to reverse replication, their rows copied to the source by the subscription's
 * table sync, waited for until every table is in sync. Run before a rollback fences the target. Idempotent;
 * returns the tables added ("database.schema.table").
 */
export async function coverNewTables(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  databases: string[],
  timeoutMs: number,
): Promise<string[]> {
  const added: string[] = [];
  for (const db of databases) {
    const missing = (
      await provider.sql(target, db).query<{ name: string; identified: boolean }>(
        `select format('%I.%I', n.nspname, c.relname) as name,
                (c.relreplident = 'f' or exists (select 1 from pg_index i where i.indrelid = c.oid and (i.indisprimary and c.relreplident = 'd' or i.indisreplident and c.relreplident = 'i'))) as identified
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r' and c.relpersistence = 'p'
            and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_)'
            and not exists (select 1 from pg_publication_rel pr join pg_publication p on p.oid = pr.prpubid
                             where pr.prrelid = c.oid and p.pubname in ('${NAME}', '${INSERTS}'))`,
      )
    ).rows;
    if (missing.length > 0) {
      const tgt = provider.sql(target, db);
      for (const t of missing)
        await tgt.query(`alter publication ${t.identified ? NAME : INSERTS} add table ${t.name}`);
      await provider.sql(source, db).query(`alter subscription ${NAME} refresh publication with (copy_data = true)`);
      added.push(...missing.map((t) => `${db}.${t.name}`));
    }
    // Every table's initial copy done and caught up: until then its rows are not all on the source.
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const syncing = (
        await provider
          .sql(source, db)
          .query<{ n: number }>(
            "select count(*)::int as n from pg_subscription_rel r join pg_subscription s on s.oid = r.srsubid where s.subname = $1 and r.srsubstate not in ('r', 's')",
            [NAME],
          )
      ).rows[0]!.n;
      if (syncing === 0) break;
      if (Date.now() > deadline)
        throw new DeadlineExceededError(
          `${syncing} table(s) of ${db} added to reverse replication are still being copied to ${source.id}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return added;
}

/**
 * Waits until the source confirmed applying the target's WAL up to lsn, in every database reverse replication
 * covers; returns its slots. A DEADLINE_EXCEEDED names the database behind.
 */
export async function awaitReverseApplied(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  lsn: string,
  timeoutMs: number,
): Promise<Array<{ slot_name: string; database: string }>> {
  const deadline = Date.now() + timeoutMs;
  // One connection for the whole wait, looked through every 5 ms: a rollback waits here with both sides fenced.
  return provider.sql(target).session(async (c) => {
    const slots = (
      await c.query<{ slot_name: string; database: string }>(
        "select slot_name, database from pg_replication_slots where slot_name like $1",
        [`${NAME}_%`],
      )
    ).rows;
    for (const s of slots) {
      while (true) {
        const flushed =
          (
            await c.query<{ l: string | null }>(
              "select confirmed_flush_lsn::text as l from pg_replication_slots where slot_name = $1",
              [s.slot_name],
            )
          ).rows[0]?.l ?? null;
        if (flushed && lsnAtLeast(flushed, lsn)) break;
        if (Date.now() > deadline) {
          throw new DeadlineExceededError(
            `the source has not applied the target's changes of ${s.database} up to ${lsn} (at ${flushed ?? "nothing"}); check the subscription ${NAME} on ${source.id}`,
          );
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    return slots;
  });
}

/**
 * Before a rollback fences the target: the source's subscription commits what it applies synchronously. By default a
 * subscription commits asynchronously, and reports a position applied only once the WAL writer flushed it (up to
 * wal_writer_delay, 200 ms, later): the drain, with writes stopped on both sides, would wait that long. Idempotent.
 */
export async function flushReverseCommits(provider: Provider, source: InstanceRef, dbs: string[]): Promise<void> {
  await Promise.all(
    dbs.map((db) =>
      provider.sql(source, db).session(async (c) => {
        const has = await c.query(
          "select 1 from pg_subscription s join pg_database d on d.oid = s.subdbid where s.subname = $1 and d.datname = current_database() and s.subsynccommit <> 'on'",
          [NAME],
        );
        if (has.rowCount) await c.query(`alter subscription ${NAME} set (synchronous_commit = 'on')`);
      }),
    ),
  );
}

/**
 * Waits until the source applied everything the (fenced) target wrote, then
 * carries sequences over, so the source can take writes again where the
 * target left off.
 */
export async function drainReverseReplication(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  timeoutMs: number,
): Promise<void> {
  const tgtAdmin = provider.sql(target);
  const targetLsn = (await tgtAdmin.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
  for (const s of await awaitReverseApplied(provider, source, target, targetLsn, timeoutMs)) {
    const seqs = await provider
      .sql(target, s.database)
      .session(
        async (c) =>
          (
            await c.query<{ s: string; v: string | null }>(
              "select format('%I.%I', schemaname, sequencename) as s, last_value::text as v from pg_sequences",
            )
          ).rows,
      );
    await provider.sql(source, s.database).session(async (c) => {
      for (const q of seqs) {
        if (q.v === null) continue;
        // Past the target's value in the sequence's own direction: a descending one must not hand out its values again.
        await c.query(
          `select pg_catalog.setval(c.oid, case when s.increment_by < 0 then least($2::bigint, coalesce(s.last_value, s.start_value))
                                                else greatest($2::bigint, coalesce(s.last_value, s.start_value)) end, true)
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             join pg_sequences s on s.schemaname = n.nspname and s.sequencename = c.relname
            where format('%I.%I', n.nspname, c.relname) = $1`,
          [q.s, q.v],
        );
      }
    });
  }
}

/**
 * Removes the subscriptions on the source and the publications and slots on
 * the target, then verifies that none is left. Idempotent; a side that no
 * longer exists is skipped, a side that does not answer is an error (retried):
 * a slot left behind would retain WAL on the new primary for ever.
 */
export async function stopReverseReplication(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
): Promise<void> {
  const srcDesc = await unlessGone(provider.describe(source));
  for (const db of srcDesc?.databases ?? []) {
    await provider.sql(source, db).session(async (c) => {
      const has = await c.query(
        "select 1 from pg_subscription s join pg_database d on d.oid = s.subdbid where s.subname = $1 and d.datname = current_database()",
        [NAME],
      );
      if (has.rowCount === 0) return;
      await c.query(`alter subscription ${NAME} disable`);
      // Detach from the remote slot so the drop works whether the target answers or not; the slot is dropped on the target below.
      await c.query(`alter subscription ${NAME} set (slot_name = none)`);
      await c.query(`drop subscription ${NAME}`);
    });
  }
  const targetThere = await unlessGone(provider.describe(target));
  if (targetThere)
    await provider.sql(target).session(async (c) => {
      for (let i = 0; i < 50; i++) {
        const slots = (
          await c.query<{ slot_name: string; active: boolean }>(
            "select slot_name, active from pg_replication_slots where slot_name like $1",
            [`${NAME}_%`],
          )
        ).rows;
        if (slots.length === 0) break;
        for (const s of slots) if (!s.active) await c.query("select pg_drop_replication_slot($1)", [s.slot_name]);
        if (slots.every((s) => !s.active)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  // The publications exist on both sides (they came over with the catalog); the DDL capture on the target only.
  for (const desc of [targetThere, srcDesc]) {
    for (const db of desc?.databases ?? []) {
      await provider
        .sql(desc!.ref, db)
        .query(`drop publication if exists ${NAME}; drop publication if exists ${INSERTS}`);
    }
  }
  if (targetThere) await removeDdlCapture(provider, target, targetThere.databases);
  const left = [
    ...(targetThere
      ? (
          await provider
            .sql(target)
            .query<{ s: string }>("select slot_name as s from pg_replication_slots where slot_name like $1", [
              `${NAME}_%`,
            ])
        ).rows.map((r) => `slot ${r.s} on ${target.id}`)
      : []),
    ...(srcDesc
      ? (
          await provider
            .sql(source)
            .query<{ s: string }>("select subname as s from pg_subscription where subname = $1", [NAME])
        ).rows.map((r) => `subscription ${r.s} on ${source.id}`)
      : []),
  ];
  if (left.length > 0) {
    throw new FailedPreconditionError(
      `reverse replication is not fully removed: ${left.join(", ")} remain (a walsender still reads them?); retrying`,
    );
  }
}

/**
 * Reverse replication's backlog, from its slots on the target: the bytes of
 * the target's WAL the source has not confirmed applying (the slowest
 * database's), and the WAL the target retains for it. Cheap: one query.
 */
export async function reverseBacklog(
  provider: Provider,
  target: InstanceRef,
): Promise<{ lagBytes: bigint; retainedBytes: bigint; targetLsn: string; slots: number }> {
  const r = await provider.sql(target).query<{ lag: string | null; retained: string | null; lsn: string; n: number }>(
    `select max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn))::bigint::text as lag,
            max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::bigint::text as retained,
            pg_current_wal_lsn()::text as lsn, count(*)::int as n
       from pg_replication_slots where slot_name like $1`,
    [`${NAME}_%`],
  );
  const row = r.rows[0]!;
  return {
    lagBytes: BigInt(row.lag ?? "0"),
    retainedBytes: BigInt(row.retained ?? "0"),
    targetLsn: row.lsn,
    slots: row.n,
  };
}
