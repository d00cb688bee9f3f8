import { describe, expect, it } from "vitest";
import { createRealisticSource, RealisticLoad } from "../testing/workload/realistic.js";
import { grpc, unary, unaryError } from "./helpers/grpc-clients.js";
import { adminOf } from "./helpers/clusters.js";
import { getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { useService } from "./helpers/fixture.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const check = (m: any, name: string) => m.checks.find((c: any) => c.name === name);

/** An on-demand comparison under the load: no range differs; a table written at every look (the keyless one, compared whole) may be in flux, said as such. */
function expectNoDifference(v: any): void {
  expect(v.check.name).toBe("verify.data");
  expect(v.mismatches).toEqual([]);
  expect(["CHECK_STATUS_PASS", "CHECK_STATUS_WARN"]).toContain(v.check.status);
  if (v.check.status === "CHECK_STATUS_WARN") expect(v.check.measured).toMatch(/written throughout, not compared/);
}

/**
 * A migration of a database as production ones are (test/../src/workload/realistic.ts: two databases, keyless,
 * unlogged and partitioned tables, large objects, enums, jsonb, arrays, generated columns, odd sequences, a
 * materialized view), cutover then rollback, under a load that touches every table through the sidecar the whole
 * time. No statement the application sends is refused at any phase; the data are compared table by table after
 * each switch; a schema change on the target shows in rollback readiness within seconds.
 */
describe("a realistic schema, cutover then rollback under a load touching every table", () => {
  const f = useService("realistic", "realistic-sidecar", async () => ["--lease-ms", "3000"]);

  it("refuses the unlogged table unless acknowledged, then migrates both ways refusing no statement, every table equal", async () => {
    const src = await createRealisticSource(f.provider, "real-src", { rows: 2000 });

    // Preflight without the schema choices: the unlogged table is refused, with the remedy.
    const bare = localSpec("real-db", "real-src", "real-tgt");
    const pre = await unary(f.client, "RunPreflight", { spec: bare });
    expect(pre.passed).toBe(false);
    const unlogged = check(pre, "schema.unlogged_tables");
    expect(unlogged).toMatchObject({ status: "CHECK_STATUS_FAIL", measured: "unlogged: app.public.sessions" });
    expect(unlogged.remedy).toMatch(/ALTER TABLE public\.sessions SET LOGGED/);
    expect(check(pre, "schema.replica_identity").measured).toMatch(/public\.audit_log, public\.events/);

    const m = (await unary(f.client, "CreateMigration", { spec: { ...bare, schema_policy: src.schemaPolicy } }))
      .migration;
    const port = await f.proxy.waitForListener("real-db");
    const load = new RealisticLoad({ host: "127.0.0.1", port, ...src.app, ratePerSec: 25 });
    load.start();
    f.owned.push(load);

    // Waiting for approval, publications made: the application's updates and deletes on keyless tables still work.
    await waitForPhase(f.client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
    let ready = await getMigration(f.client, m.id);
    expect(check(ready, "rollback.coverage")).toMatchObject({ status: "CHECK_STATUS_WARN" });
    expect(check(ready, "rollback.coverage").measured).toMatch(
      /app\.public\.audit_log: updates and deletes.*app\.public\.sessions: every row.*sales\.daily_totals/,
    );
    expect(check(ready, "rollback.coverage").measured).not.toMatch(/public\.events/);
    await sleep(1500);
    ready = await getMigration(f.client, m.id);
    expect(ready.phase).toBe("PHASE_READY_FOR_CUTOVER");
    expect(load.refused).toEqual([]);
    // On demand, before cutover: the replica against the source, under the load.
    const before = await unary(f.client, "VerifyMigration", { id: m.id });
    console.log(`[realistic] VerifyMigration before cutover: ${before.check.status} ${before.check.measured}`);
    expectNoDifference(before);

    await unary(f.client, "ApproveCutover", { id: m.id });
    const done = await waitForPhase(f.client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"]);
    expect(done.phase, done.events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    const createdBefore = new Set(load.created.keys());
    const completed = await getMigration(f.client, m.id);
    const afterCutover = check(completed, "verify.data");
    console.log(`[realistic] after cutover: ${afterCutover.status} ${afterCutover.measured}`);
    expect(afterCutover).toMatchObject({
      status: "CHECK_STATUS_PASS",
      threshold: expect.stringContaining("at the final LSN"),
    });
    const sessionsOnTarget = await adminOf(f.provider, "real-tgt").query<{ n: number }>(
      "select count(*)::int as n from sessions",
      [],
      "app",
    );
    console.log(
      `[realistic] the disposable unlogged table on the target after cutover: ${sessionsOnTarget[0]!.n} rows`,
    );

    // The load runs on the target; on demand, the source following it through reverse replication compares equal.
    const during = await unary(f.client, "VerifyMigration", { id: m.id });
    console.log(`[realistic] VerifyMigration after cutover: ${during.check.status} ${during.check.measured}`);
    expectNoDifference(during);
    // A schema change there shows in rollback readiness within seconds.
    // Fenced after the rollback, it is read through the fence's role, as pgshift reads it.
    const tgt = adminOf(f.provider, "real-tgt");
    const ddlAt = Date.now();
    await tgt.query(
      "alter table public.audit_log add column note text; create table public.late (id int primary key, v text); insert into public.late select g, 'made on the target' from generate_series(1, 40) g",
      [],
      "app",
    );
    let drift: any;
    for (let i = 0; i < 100 && drift?.status !== "CHECK_STATUS_WARN"; i++) {
      await sleep(100);
      drift = check(await getMigration(f.client, m.id), "rollback.schema_changes");
    }
    console.log(`[realistic] DDL on the target shown after ${Date.now() - ddlAt} ms: ${drift?.measured}`);
    expect(drift).toMatchObject({
      status: "CHECK_STATUS_WARN",
      measured: expect.stringContaining("app.public.audit_log"),
    });
    expect(drift.measured).toMatch(/note text/);
    expect(drift.measured).toMatch(/app\.public\.late exists on the target only/);
    // With the statement the target ran, recorded by its event trigger.
    expect(drift.measured).toMatch(
      /run on the target: "alter table public\.audit_log add column note text; create table public\.late/,
    );
    expect(drift.measured).not.toMatch(/refresh materialized view/);
    expect(Date.now() - ddlAt).toBeLessThan(10_000);
    // The remedy, as an operator would: the same change on the source; readiness clears.
    // The source is fenced until a rollback: an operator reaches it through the fence's role.
    await adminOf(f.provider, "real-src").query(
      "alter table public.audit_log add column note text; create table public.late (id int primary key, v text)",
      [],
      "app",
    );
    for (let i = 0; i < 100 && drift?.status !== "CHECK_STATUS_PASS"; i++) {
      await sleep(100);
      drift = check(await getMigration(f.client, m.id), "rollback.schema_changes");
    }
    expect(drift.status).toBe("CHECK_STATUS_PASS");

    // Rollback under the same load: every write made on the target reaches the source, large objects included.
    const createdOnTarget = [...load.created].filter(([oid]) => !createdBefore.has(oid));
    expect(createdOnTarget.length).toBeGreaterThan(0);
    await unary(f.client, "RollbackMigration", { id: m.id, reason: "realistic schema test" });
    const back = await waitForPhase(f.client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"]);
    expect(back.phase, back.events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
    await sleep(1000);
    await load.stop();
    const rolled = await getMigration(f.client, m.id);
    const afterRollback = check(rolled, "verify.data");
    // The table made after promotion came back with its rows.
    expect(check(rolled, "rollback.new_tables")?.measured).toMatch(/app\.public\.late/);
    expect(
      (await src.cluster.query<{ n: number }>("select count(*)::int as n from public.late", [], "app"))[0]!.n,
    ).toBe(40);
    expect((await unaryError(f.client, "VerifyMigration", { id: m.id })).code).toBe(grpc.status.FAILED_PRECONDITION);
    console.log(`[realistic] after rollback: ${afterRollback.status} ${afterRollback.measured}`);
    expect(afterRollback).toMatchObject({
      status: "CHECK_STATUS_PASS",
      threshold: expect.stringContaining("drain point"),
    });

    console.log(
      `[realistic] ${load.committed.length} transactions committed, ${load.failures.length} connection failures, ${load.refused.length} refused`,
    );
    expect(load.refused).toEqual([]);
    expect(load.committed.length).toBeGreaterThan(50);
    // Sequences carried back in their own direction: the source hands out none the target used.
    const seq = async (c: ReturnType<typeof adminOf>) =>
      (
        await c.query<{ down: string; up: string }>(
          "select (select last_value from public.countdown)::text as down, (select last_value from sales.invoice_no)::text as up",
          [],
          "app",
        )
      )[0]!;
    const [onSource, onTarget] = [await seq(adminOf(f.provider, "real-src")), await seq(tgt)];
    expect(BigInt(onSource.down)).toBeLessThanOrEqual(BigInt(onTarget.down));
    expect(BigInt(onSource.up)).toBeGreaterThanOrEqual(BigInt(onTarget.up));
    const ids = new Set(
      (await src.cluster.query<{ id: string }>("select id::text from sales.orders", [], "app")).map((r) => r.id),
    );
    expect(load.committed.filter((id) => !ids.has(String(id)))).toEqual([]);
    // Large objects the load created (on either side, the target's among them) are on the source with their bytes.
    const los = new Map(
      (
        await src.cluster.query<{ oid: string; d: string }>(
          "select oid::text, md5(lo_get(oid)) as d from pg_largeobject_metadata",
          [],
          "app",
        )
      ).map((r) => [r.oid, r.d]),
    );
    expect(createdOnTarget.filter(([oid, d]) => los.get(oid) !== d)).toEqual([]);
    expect([...load.created].filter(([oid, d]) => los.get(oid) !== d)).toEqual([]);
  });
});
