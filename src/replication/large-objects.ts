import type { InstanceRef, Provider } from "../providers/provider.js";
import type { Sql } from "../providers/sql.js";

/** What carrying large objects back changed on the source. */
export interface LargeObjectSync {
  copied: number;
  removed: number;
  bytes: number;
}

/** Large objects read from the target per statement. */
const BATCH = 100;

const DIGESTS = `select m.oid::text as oid, pg_get_userbyid(m.lomowner)::text as owner, md5(lo_get(m.oid)) as digest
                   from pg_largeobject_metadata m order by m.oid`;

async function digests(sql: Sql): Promise<Map<string, { owner: string; digest: string }>> {
  const rows = (await sql.query<{ oid: string; owner: string; digest: string }>(DIGESTS)).rows;
  return new Map(rows.map((r) => [r.oid, { owner: r.owner, digest: r.digest }]));
}

/**
 * Logical replication does not carry large objects: with the target's writes stopped, each database's large
 * objects are compared on both sides by digest, and the source made to hold exactly the target's: created or
 * changed ones copied under the same OID and owner, removed ones unlinked. Idempotent (a second run finds nothing
 * to do). Only the databases reverse replication covers, whose state the rollback hands back to the source.
 */
export async function carryLargeObjectsBack(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  databases: string[],
): Promise<LargeObjectSync> {
  const out: LargeObjectSync = { copied: 0, removed: 0, bytes: 0 };
  for (const db of databases) {
    const tgtSql = provider.sql(target, db);
    const [tgt, src] = await Promise.all([digests(tgtSql), digests(provider.sql(source, db))]);
    const changed = [...tgt].filter(([oid, t]) => src.get(oid)?.digest !== t.digest || src.get(oid)?.owner !== t.owner);
    const gone = [...src.keys()].filter((oid) => !tgt.has(oid));
    if (changed.length === 0 && gone.length === 0) continue;
    // The changed objects' bytes in one statement a batch: each statement through the port is a connection.
    const data = new Map<string, Buffer>();
    for (let i = 0; i < changed.length; i += BATCH) {
      const oids = changed.slice(i, i + BATCH).map(([oid]) => oid);
      const rows = (
        await tgtSql.query<{ oid: string; data: Buffer }>(
          "select oid::text as oid, lo_get(oid) as data from unnest($1::oid[]) oid",
          [oids],
        )
      ).rows;
      for (const r of rows) data.set(r.oid, r.data);
    }
    await provider.sql(source, db).session(async (c) => {
      await c.query("begin");
      for (const oid of gone) await c.query("select lo_unlink($1::oid)", [oid]);
      for (const [oid, t] of changed) {
        const bytes = data.get(oid)!;
        if (src.has(oid)) await c.query("select lo_unlink($1::oid)", [oid]);
        await c.query("select lo_from_bytea($1::oid, $2::bytea)", [oid, bytes]);
        await c.query(`alter large object ${Number(oid)} owner to ${quoteIdent(t.owner)}`);
        out.bytes += bytes.length;
      }
      await c.query("commit");
    });
    out.copied += changed.length;
    out.removed += gone.length;
  }
  return out;
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
