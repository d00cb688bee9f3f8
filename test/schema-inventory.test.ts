import pg from "pg";
import { describe, expect, it } from "vitest";
import { compareDatabase, dataVerdict } from "../src/checks/data-compare.js";
import { readGuardrailBlockers } from "../src/checks/guardrails.js";
import { HeldSnapshots } from "../src/checks/held-snapshots.js";
import { schemaChecks } from "../src/checks/schema-checks.js";
import { readSchemaDrift } from "../src/checks/schema-drift.js";
import { readSchemaInventory } from "../src/checks/schema-inventory.js";
import { carryLargeObjectsBack } from "../src/replication/large-objects.js";
import { installDdlCapture, readCapturedDdl } from "../src/replication/ddl-capture.js";
import {
  coverNewTables,
  drainReverseReplication,
  prepareReverseReplication,
  startReverseReplication,
  stopReverseReplication,
} from "../src/replication/reverse.js";
import { adminOf, useLocalProvider } from "./helpers/clusters.js";

const NONE = { disposableUnlogged: [], identityFull: [] };
const SRC = { id: "inv-src" };
const TGT = { id: "inv-tgt" };

/**
 * The schema inventory, its verdicts, the guardrails, schema drift, the reverse publications and large objects
 * carried back, each once against real clusters: a source holding what production databases hold besides plain
 * keyed tables, and its physical replica, promoted.
 */
describe("the schema inventory and what depends on it, on real clusters", () => {
  const { provider } = useLocalProvider("schema-inv");
  const src = () => adminOf(provider, SRC.id);
  const tgt = () => adminOf(provider, TGT.id);

  it("inventories, publishes without refusing a statement, guards the fence, sees drift, carries large objects back", async () => {
    await provider.createCluster(SRC.id, { max_prepared_transactions: 4 });
    await src().query("create database app");
    await src().query(
      `create table items (id bigserial primary key, v text);
       create table nopk (v int);
       create table ident (k int not null, v int); create unique index ident_k on ident (k); alter table ident replica identity using index ident_k;
       create unlogged table cache (k int primary key, v text);
       create table measurements (id int, at date, primary key (id, at)) partition by range (at);
       create table measurements_2026 partition of measurements for values from ('2026-01-01') to ('2027-01-01');
       create materialized view totals as select count(*) as n from items;
       create function noop_ddl() returns event_trigger language plpgsql as $$ begin end $$;
       create event trigger audit_ddl on ddl_command_end execute function noop_ddl();
       create publication app_cdc for table items;
       insert into items (v) select md5(g::text) from generate_series(1, 50) g;
       insert into nopk select generate_series(1, 10);
       select lo_from_bytea(40001, 'kept'), lo_from_bytea(40002, 'changed on the target'), lo_from_bytea(40003, 'removed on the target');`,
      [],
      "app",
    );

    const inv = await readSchemaInventory(provider, SRC);
    const app = inv.databases.find((d) => d.database === "app")!;
    expect(app.identified).toEqual(["public.ident", "public.items", "public.measurements_2026"]);
    expect(app.keyless).toEqual(["public.nopk"]);
    expect(app.unlogged).toEqual(["public.cache"]);
    expect(app.partitioned).toEqual(["public.measurements"]);
    expect(app.materializedViews).toEqual(["public.totals"]);
    expect(app.largeObjects).toBe(3);
    expect(app.publications).toEqual(["app_cdc"]);
    expect(app.eventTriggers).toEqual(["audit_ddl"]);
    const verdicts = schemaChecks(inv, NONE);
    const status = Object.fromEntries(verdicts.map((v) => [v.name, v.status]));
    expect(status).toMatchObject({
      "schema.unlogged_tables": "FAIL",
      "schema.replica_identity": "WARN",
      "schema.large_objects": "PASS",
      "schema.event_triggers": "WARN",
      "rollback.coverage": "WARN",
    });
    expect(
      schemaChecks(inv, { ...NONE, disposableUnlogged: ["app.public.cache"] }).find(
        (v) => v.name === "schema.unlogged_tables",
      )?.status,
    ).toBe("WARN");

    // A foreign table and a subscription (disabled, no slot: it needs no publisher to exist), seen, then removed.
    await src().query(
      `create extension postgres_fdw;
       create server elsewhere foreign data wrapper postgres_fdw options (host '127.0.0.1', dbname 'app');
       create foreign table remote_items (id bigint) server elsewhere options (table_name 'items');
       create subscription upstream connection 'host=127.0.0.1 dbname=none' publication p with (connect = false);`,
      [],
      "app",
    );
    const more = await readSchemaInventory(provider, SRC);
    const moreApp = more.databases.find((d) => d.database === "app")!;
    expect(moreApp).toMatchObject({ foreign: ["public.remote_items"], subscriptions: ["upstream"] });
    const moreStatus = Object.fromEntries(schemaChecks(more, NONE).map((v) => [v.name, v.status]));
    expect(moreStatus).toMatchObject({ "schema.foreign_tables": "WARN", "schema.subscriptions": "FAIL" });
    await src().query(
      "alter subscription upstream set (slot_name = none); drop subscription upstream; drop foreign table remote_items; drop server elsewhere; drop extension postgres_fdw",
      [],
      "app",
    );

    // The reverse publications: the keyless table published for inserts only, so the application's UPDATE and
    // DELETE on it still work on the source (a FOR ALL TABLES publication makes them fail).
    const pubs = await prepareReverseReplication(provider, SRC, inv);
    expect(pubs.find((p) => p.database === "app")).toEqual({
      database: "app",
      all: ["public.ident", "public.items", "public.measurements_2026"],
      inserts: ["public.nopk"],
    });
    await src().query(
      "update nopk set v = v + 100 where v <= 5; delete from nopk where v = 10; update cache set v = 'x'; update ident set v = 1",
      [],
      "app",
    );

    // Guardrails: a session idle in a transaction, a prepared transaction; neither once they end.
    const idle = new pg.Client(provider.cluster(SRC).connectionConfig("app"));
    await idle.connect();
    try {
      await idle.query("set application_name = 'batch-job'; begin; update items set v = 'held' where id = 1");
      await src().query("begin; insert into nopk values (-1); prepare transaction 'tx-inv'", [], "app");
      await new Promise((r) => setTimeout(r, 1200));
      const blockers = await readGuardrailBlockers(provider.sql(SRC), 60_000);
      expect((await readSchemaInventory(provider, SRC)).prepared.map((p) => p.gid)).toEqual(["tx-inv"]);
      expect(
        schemaChecks(await readSchemaInventory(provider, SRC), NONE).find((v) => v.name === "transactions.prepared")
          ?.status,
      ).toBe("WARN");
      expect(blockers.map((b) => `${b.kind} ${b.application ?? b.what}`).sort()).toEqual([
        "idle in transaction batch-job",
        "prepared transaction tx-inv",
      ]);
      expect(blockers.find((b) => b.kind === "idle in transaction")?.what).toMatch(/update items set v = 'held'/);
    } finally {
      await idle.query("rollback").catch(() => {});
      await idle.end();
    }
    await src().query("commit prepared 'tx-inv'", [], "app");
    expect(await readGuardrailBlockers(provider.sql(SRC), 60_000)).toEqual([]);

    // A replica promoted, reverse replication started as at PROMOTING.
    await provider.createReplica(SRC, TGT, "m-inv");
    await provider.fence(SRC);
    await provider.waitForReplay(TGT, await provider.currentLsn(SRC), 30_000);
    await provider.promote(SRC, TGT);
    await startReverseReplication(provider, SRC, TGT, ["app"]);
    expect(await readSchemaDrift(provider, SRC, TGT, ["app"])).toEqual([]);
    // The target records its DDL statements from now on (its own table is unlogged and left out of every comparison).
    await installDdlCapture(provider, TGT, ["app"]);
    await installDdlCapture(provider, TGT, ["app"]);
    expect(await readSchemaDrift(provider, SRC, TGT, ["app"])).toEqual([]);
    // Both sides as promoted, held for a comparison made after the target took writes.
    const snapshots = new HeldSnapshots();
    await snapshots.hold("cutover", [
      { side: "source", database: "app", port: provider.sql(SRC, "app") },
      { side: "target", database: "app", port: provider.sql(TGT, "app") },
    ]);

    // Writes on the target, large objects among them, and a statement on the keyless table of each kind.
    await tgt().query(
      `insert into items (v) values ('on the target'); insert into nopk values (77); update nopk set v = v + 1000; delete from nopk where v = 1001;
       select lo_put(40002, 0, 'CHANGED'), lo_unlink(40003), lo_from_bytea(40004, 'new on the target');`,
      [],
      "app",
    );
    const held = snapshots.take("cutover")!;
    const atPromotion = await compareDatabase("app", held.sql("source", "app")!, held.sql("target", "app")!, {
      throttleMs: 0,
    });
    held.release();
    expect(atPromotion).toMatchObject({ tables: 4, mismatches: [] });
    // items 50; nopk 10, less the one deleted, plus the prepared insert committed.
    expect(atPromotion.rows).toBe(50 + 10);
    await drainReverseReplication(provider, SRC, TGT, 30_000);
    // Now, as they are: every table alike but the keyless one, whose update and delete were not carried back.
    const now = await compareDatabase("app", provider.sql(SRC, "app"), provider.sql(TGT, "app"), { throttleMs: 0 });
    expect(now.mismatches).toEqual([
      { database: "app", table: "public.nopk", range: "whole table", source: "11 rows", target: "11 rows" },
    ]);
    expect(dataVerdict({ ...now, databases: 1, ms: 1 }, "now", ["app.public.nopk"]).status).toBe("WARN");
    expect(dataVerdict({ ...now, databases: 1, ms: 1 }, "now").status).toBe("FAIL");
    const sync = await carryLargeObjectsBack(provider, SRC, TGT, ["app"]);
    expect(sync).toMatchObject({ copied: 2, removed: 1 });
    const los = async (c: typeof src) =>
      (
        await c().query<{ oid: string; data: string }>(
          "select oid::text, convert_from(lo_get(oid), 'UTF8') as data from pg_largeobject_metadata order by oid",
          [],
          "app",
        )
      ).map((r) => `${r.oid}=${r.data}`);
    expect(await los(src)).toEqual(await los(tgt));
    expect(await los(src)).toEqual(["40001=kept", "40002=CHANGED on the target", "40004=new on the target"]);
    expect(await carryLargeObjectsBack(provider, SRC, TGT, ["app"])).toEqual({ copied: 0, removed: 0, bytes: 0 });
    // Inserts into the keyless table came back; its update and delete did not, as rollback readiness says.
    const nopk = await src().query<{ v: number }>("select v from nopk where v in (77, 1077)", [], "app");
    expect(nopk.map((r) => r.v)).toEqual([77]);
    expect((await src().query<{ v: string }>("select v from items order by id desc limit 1", [], "app"))[0]!.v).toBe(
      "on the target",
    );

    // A schema change on the target after promotion: named, with both sides' shapes.
    await tgt().query("alter table items add column note text; create table fresh (id int primary key)", [], "app");
    const drift = await readSchemaDrift(provider, SRC, TGT, ["app"]);
    expect(drift.map((d) => d.table).sort()).toEqual(["public.fresh", "public.items"]);
    expect(drift.find((d) => d.table === "public.items")?.target).toMatch(/note text/);
    // One statement of two commands: one entry, both tags.
    expect(await readCapturedDdl(provider, TGT, "app")).toMatchObject([
      {
        tag: "ALTER TABLE, CREATE TABLE",
        statement: "alter table items add column note text; create table fresh (id int primary key)",
      },
    ]);

    // The remedy: the same change on the source, the new table created there empty; the rollback then copies its rows.
    await tgt().query("insert into fresh select generate_series(1, 25)", [], "app");
    await src().query("alter table items add column note text; create table fresh (id int primary key)", [], "app");
    expect(await readSchemaDrift(provider, SRC, TGT, ["app"])).toEqual([]);
    expect(await coverNewTables(provider, SRC, TGT, ["app"], 30_000)).toEqual(["app.public.fresh"]);
    expect((await src().query<{ n: number }>("select count(*)::int as n from fresh", [], "app"))[0]!.n).toBe(25);
    await tgt().query("insert into fresh values (26)", [], "app");
    await drainReverseReplication(provider, SRC, TGT, 30_000);
    expect((await src().query<{ n: number }>("select count(*)::int as n from fresh", [], "app"))[0]!.n).toBe(26);
    expect(await coverNewTables(provider, SRC, TGT, ["app"], 30_000)).toEqual([]);

    await stopReverseReplication(provider, SRC, TGT);
    const left = await src().query<{ n: number }>(
      "select count(*)::int as n from pg_publication where pubname like 'pgshift%'",
      [],
      "app",
    );
    expect(left[0]!.n).toBe(0);
    // The DDL capture went with reverse replication: no event trigger or schema of ours is left on the target.
    const ours = await tgt().query<{ n: number }>(
      "select (select count(*) from pg_event_trigger where evtname like 'pgshift%') + (select count(*) from pg_namespace where nspname = 'pgshift_ddl') as n",
      [],
      "app",
    );
    expect(Number(ours[0]!.n)).toBe(0);
  });
});
