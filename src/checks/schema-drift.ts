import { check, type CheckResult } from "../domain/check.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import { COLUMNS, readTableShapes } from "./schema-inventory.js";

/** A table whose shape differs between the two sides (absent on one side: undefined). */
export interface TableDrift {
  database: string;
  table: string;
  source?: string;
  target?: string;
}

const FINGERPRINT = `select md5(coalesce(string_agg(tbl || ' ' || kind || persistence || ' (' || cols || ')', E'\\n' order by tbl), '')) as f from (${COLUMNS}) t`;

/**
 * Tables whose columns differ between source and target, in the given databases: a schema change made on one side
 * only (after promotion, DDL is not replicated either way). One cheap digest per side and database; the tables
 * are listed only where the digests differ.
 */
export async function readSchemaDrift(
  provider: Provider,
  source: InstanceRef,
  target: InstanceRef,
  databases: string[],
): Promise<TableDrift[]> {
  const out: TableDrift[] = [];
  for (const db of databases) {
    const [s, t] = await Promise.all(
      [source, target].map(async (ref) => (await provider.sql(ref, db).query<{ f: string }>(FINGERPRINT)).rows[0]!.f),
    );
    if (s === t) continue;
    const [src, tgt] = await Promise.all([
      readTableShapes(provider.sql(source, db)),
      readTableShapes(provider.sql(target, db)),
    ]);
    for (const table of new Set([...src.keys(), ...tgt.keys()])) {
      if (src.get(table) !== tgt.get(table))
        out.push({ database: db, table, source: src.get(table), target: tgt.get(table) });
    }
  }
  return out;
}

function describe(d: TableDrift): string {
  if (d.source === undefined) return `${d.database}.${d.table} exists on the target only: ${d.target}`;
  if (d.target === undefined)
    return `${d.database}.${d.table} exists on the source only (dropped or renamed on the target)`;
  return `${d.database}.${d.table} is ${d.target} on the target but ${d.source} on the source`;
}

/** The verdict on schema changes after promotion: a rollback cannot carry them, so it holds before fencing until both sides match. */
export function schemaDriftCheck(
  drift: TableDrift[],
  sourceId: string,
  statements: readonly { tag: string; statement: string }[] = [],
): CheckResult {
  const threshold = "the same tables and columns on the source and the target";
  if (drift.length === 0)
    return check("rollback.schema_changes", "PASS", {
      measured: "no schema change on either side since promotion",
      threshold,
    });
  const ran = statements.length
    ? `; run on the target: ${statements.map((s) => JSON.stringify(s.statement.trim())).join("; ")}`
    : "";
  return check("rollback.schema_changes", "WARN", {
    measured: drift.map(describe).join("; ") + ran,
    threshold,
    message: `${drift.length} table(s) changed shape on one side only: reverse replication cannot apply the target's changes to them, and a rollback would stop, before fencing the target, until the source matches`,
    remedy: `apply the same change to ${sourceId} (the statement the target ran; a table made on the target only: create it there, empty, and a rollback copies its rows), or undo it on the target; reverse replication then carries on, and a rollback proceeds`,
  });
}
