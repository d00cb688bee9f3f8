import type { InstanceRef, Provider } from "../providers/provider.js";
import type { Sql } from "../providers/sql.js";
import {
  DDL_CAPTURE_SCHEMA,
  type DatabaseInventory,
  type PreparedTransaction,
  type SchemaInventory,
} from "../domain/schema-inventory.js";

export type { DatabaseInventory, PreparedTransaction, SchemaInventory };

/** Our own objects (reverse replication, probes) are not the application's. */
const OURS = "pgshift%";

/** Relations of the application: not the catalogs, not temporary, not TOAST. */
const RELS = `
  select c.oid, c.relkind, c.relpersistence, c.relreplident, format('%I.%I', n.nspname, c.relname) as name
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p', 'f', 'm') and c.relpersistence <> 't'
     and n.nspname not in ('pg_catalog', 'information_schema', '${DDL_CAPTURE_SCHEMA}') and n.nspname !~ '^pg_(toast|temp_)'`;

/** Every user table's columns, in one digest: what logical replication's apply needs to match on both sides. */
export const COLUMNS = `
  select format('%I.%I', n.nspname, c.relname) as tbl, c.relkind::text as kind, c.relpersistence::text as persistence,
         coalesce(string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod), case when a.attnotnull then ' not null' else '' end),
                             ', ' order by a.attnum), '') as cols
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
   where c.relkind in ('r', 'p', 'f') and c.relpersistence <> 't'
     and n.nspname not in ('pg_catalog', 'information_schema', '${DDL_CAPTURE_SCHEMA}') and n.nspname !~ '^pg_(toast|temp_)'
   group by 1, 2, 3`;

const INVENTORY = `
with rels as (${RELS}),
identified as (
  select r.* from rels r
   where r.relkind = 'r' and r.relpersistence = 'p' and (
         r.relreplident = 'f'
      or (r.relreplident = 'd' and exists (select 1 from pg_index i where i.indrelid = r.oid and i.indisprimary))
      or (r.relreplident = 'i' and exists (select 1 from pg_index i where i.indrelid = r.oid and i.indisreplident)))
)
select
  coalesce((select json_agg(name order by name) from identified), '[]') as identified,
  coalesce((select json_agg(name order by name) from rels r where r.relkind = 'r' and r.relpersistence = 'p'
                                                              and r.oid not in (select oid from identified)), '[]') as keyless,
  coalesce((select json_agg(name order by name) from rels where relpersistence = 'u' and relkind in ('r', 'p')), '[]') as unlogged,
  coalesce((select json_agg(name order by name) from rels where relkind = 'p'), '[]') as partitioned,
  coalesce((select json_agg(name order by name) from rels where relkind = 'f'), '[]') as foreign,
  coalesce((select json_agg(name order by name) from rels where relkind = 'm'), '[]') as matviews,
  (select count(*) from pg_largeobject_metadata)::int as lo_count,
  pg_total_relation_size('pg_catalog.pg_largeobject')::bigint::text as lo_bytes,
  coalesce((select json_agg(pubname::text order by pubname) from pg_publication where pubname not like '${OURS}'), '[]') as publications,
  coalesce((select json_agg(subname::text order by subname) from pg_subscription s join pg_database d on d.oid = s.subdbid
             where d.datname = current_database() and subname not like '${OURS}'), '[]') as subscriptions,
  coalesce((select json_agg(evtname::text order by evtname) from pg_event_trigger where evtname not like '${OURS}'), '[]') as event_triggers,
  (select md5(coalesce(string_agg(tbl || ' ' || kind || persistence || ' (' || cols || ')', E'\\n' order by tbl), '')) from (${COLUMNS}) t) as fingerprint`;

interface InventoryRow {
  identified: string[];
  keyless: string[];
  unlogged: string[];
  partitioned: string[];
  foreign: string[];
  matviews: string[];
  lo_count: number;
  lo_bytes: string;
  publications: string[];
  subscriptions: string[];
  event_triggers: string[];
  fingerprint: string;
}

/** One database's inventory, in one statement. */
export async function readDatabaseInventory(sql: Sql, database: string): Promise<DatabaseInventory> {
  const r = (await sql.query<InventoryRow>(INVENTORY)).rows[0]!;
  return {
    database,
    identified: r.identified,
    keyless: r.keyless,
    unlogged: r.unlogged,
    partitioned: r.partitioned,
    foreign: r.foreign,
    materializedViews: r.matviews,
    largeObjects: r.lo_count,
    largeObjectBytes: Number(r.lo_bytes),
    publications: r.publications,
    subscriptions: r.subscriptions,
    eventTriggers: r.event_triggers,
    fingerprint: r.fingerprint,
  };
}

/** The schema inventory of every database of an instance, and the prepared transactions it holds. */
export async function readSchemaInventory(provider: Provider, ref: InstanceRef): Promise<SchemaInventory> {
  const desc = await provider.describe(ref);
  const databases = await Promise.all(desc.databases.map((db) => readDatabaseInventory(provider.sql(ref, db), db)));
  const prepared = (
    await provider
      .sql(ref)
      .query<PreparedTransaction>(
        `select gid, database::text as database, owner::text as owner, prepared::text as "preparedAt" from pg_prepared_xacts order by prepared`,
      )
  ).rows;
  return { databases, prepared };
}

/** Each table's columns, one line a table: what differs between two sides' fingerprints. */
export async function readTableShapes(sql: Sql): Promise<Map<string, string>> {
  const rows = (await sql.query<{ tbl: string; kind: string; persistence: string; cols: string }>(COLUMNS)).rows;
  return new Map(
    rows.map((r) => [
      r.tbl,
      `${r.kind === "p" ? "partitioned " : r.kind === "f" ? "foreign " : ""}${r.persistence === "u" ? "unlogged " : ""}(${r.cols})`,
    ]),
  );
}
