import { DDL_CAPTURE_SCHEMA } from "../domain/schema-inventory.js";
import type { InstanceRef, Provider } from "../providers/provider.js";

/**
 * The schema pgshift keeps on a promoted target while reverse replication runs: an event trigger that records each
 * DDL statement the target runs, so that rollback readiness can show the statement, not only the shape it left.
 * Its table is UNLOGGED: no publication can carry it (an application's FOR ALL TABLES ones included), and it never
 * reaches a replica. Removed with reverse replication.
 */
const DDL_SCHEMA = DDL_CAPTURE_SCHEMA;
const TRIGGERS = ["pgshift_ddl_end", "pgshift_ddl_drop"];

/** A DDL statement the target ran since the capture was installed. */
export interface CapturedDdl {
  at: string;
  tag: string;
  statement: string;
}

/**
 * Installs the capture in each database (idempotent). The trigger function swallows its own errors: recording a
 * statement must never make the application's statement fail.
 */
export async function installDdlCapture(provider: Provider, target: InstanceRef, databases: string[]): Promise<void> {
  for (const db of databases) {
    await provider.sql(target, db).query(
      `create schema if not exists ${DDL_SCHEMA};
       create unlogged table if not exists ${DDL_SCHEMA}.statements (at timestamptz not null default clock_timestamp(), tag text not null, statement text not null);
       create or replace function ${DDL_SCHEMA}.capture() returns event_trigger language plpgsql security definer set search_path = pg_catalog as $f$
       begin
         -- pgshift's own statements (reverse replication's publications) are not the application's schema changes, and
         -- a refresh changes no shape.
         if current_setting('application_name', true) is distinct from 'pgshift-admin' and tg_tag <> 'REFRESH MATERIALIZED VIEW' then
           insert into ${DDL_SCHEMA}.statements (tag, statement) values (tg_tag, left(current_query(), 2000));
         end if;
       exception when others then
         null;
       end $f$;
       drop event trigger if exists ${TRIGGERS[0]};
       drop event trigger if exists ${TRIGGERS[1]};
       create event trigger ${TRIGGERS[0]} on ddl_command_end execute function ${DDL_SCHEMA}.capture();
       create event trigger ${TRIGGERS[1]} on sql_drop execute function ${DDL_SCHEMA}.capture();`,
    );
  }
}

/** The statements captured in a database, oldest first (the last `limit`); none where nothing is installed. */
export async function readCapturedDdl(
  provider: Provider,
  target: InstanceRef,
  database: string,
  limit = 20,
): Promise<CapturedDdl[]> {
  return provider.sql(target, database).session(async (c) => {
    const there = (await c.query<{ t: string | null }>(`select to_regclass('${DDL_SCHEMA}.statements')::text as t`))
      .rows[0]!.t;
    if (!there) return [];
    const r = await c.query<CapturedDdl>(
      // A statement of several commands (or a drop, which fires twice) is one entry.
      `select min(at)::text as at, string_agg(distinct tag, ', ') as tag, statement
         from (select * from ${DDL_SCHEMA}.statements order by at desc limit $1) s group by statement order by min(at)`,
      [limit],
    );
    return r.rows;
  });
}

/** Removes the capture from each database of the instance (idempotent; a database without it is left as it is). */
export async function removeDdlCapture(provider: Provider, ref: InstanceRef, databases: string[]): Promise<void> {
  for (const db of databases) {
    await provider
      .sql(ref, db)
      .query(
        `drop event trigger if exists ${TRIGGERS[0]}; drop event trigger if exists ${TRIGGERS[1]}; drop schema if exists ${DDL_SCHEMA} cascade`,
      );
  }
}
