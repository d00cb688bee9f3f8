import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider, replicaSlotName } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { XdsTcpProxy } from "../src/proxy/xds-tcp-proxy.js";
import { migrationClient, unary, unaryError, grpc, type AnyClient } from "./helpers/grpc-clients.js";
import { expectChecksStreamed, getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";
import { destroyClusters } from "./helpers/clusters.js";

describe("the engine drives migrations on the local provider, through the real service", () => {
  const tmp = tempDir("engine");
  const provider = new LocalProvider(join(tmp.dir, "local"));
  let svc: ServiceProcess;
  let client: AnyClient;

  beforeAll(async () => {
    svc = await startServiceProcess(["--data-dir", tmp.dir, "--lease-ms", "3000"], {
      PGSHIFT_LOG_LEVEL: process.env.DEBUG_SERVICE ? "debug" : "warn",
    });
    client = migrationClient(svc.address);
  });

  afterAll(async () => {
    if (process.env.DEBUG_SERVICE) console.log(svc?.stderr());
    client?.close();
    if (svc) await svc.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  it("runs an automatic migration to COMPLETED under a write load, every committed row on the target, then finalizes", async () => {
    const { app } = await createSampleSource(provider, "auto-src", { rows: 2000 });
    // The application goes through the data access layer, as it must: the target's baseline is held to the source's.
    const proxy = new XdsTcpProxy({ xds: `127.0.0.1:${svc.xdsPort}`, nodeId: "engine-sidecar", listenPort: () => 0 });
    await proxy.start();
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("auto-db", "auto-src", "auto-tgt", {
          cutover_mode: "CUTOVER_MODE_AUTOMATIC",
          lag_policy: { window: { seconds: 3 } },
        }),
      })
    ).migration;
    const port = await proxy.waitForListener("auto-db");
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 100 });
    load.start();
    const { phase, events } = await waitForPhase(client, m.id, [
      "PHASE_COMPLETED",
      "PHASE_FAILED",
      "PHASE_ROLLED_BACK",
    ]);
    await load.stop();
    await proxy.stop();
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    const path = events
      .filter((e) => e.type === "EVENT_TYPE_PHASE_CHANGED")
      .map((e) => e.transition.to.replace("PHASE_", ""));
    expect(path).toEqual([
      "PREFLIGHT",
      "PROVISIONING",
      "REPLICATING",
      "READY_FOR_CUTOVER",
      "QUIESCING",
      "FINAL_SYNC",
      "CDC_PREPARE",
      "PROMOTING",
      "CDC_RESTORE",
      "ROUTING",
      "VERIFYING",
      "COMPLETED",
    ]);
    const got = await getMigration(client, m.id);
    expect(got.checks.find((c: any) => c.name === "replication.lag_window").status).toBe("CHECK_STATUS_PASS");
    expect(got.checks.find((c: any) => c.name === "slots.inactive_logical").status).toBe("CHECK_STATUS_PASS");
    // The source under its load was captured before cutover, and the target held to it after.
    expect(got.checks.find((c: any) => c.name === "baseline.captured").measured).toMatch(
      /commits\/s.*commit p50 [\d.]+ ms \/ p99/,
    );
    expect(got.checks.find((c: any) => c.name === "baseline.compare").status).toBe("CHECK_STATUS_PASS");
    expect(got.history.map((h: any) => h.to)).toContain("PHASE_COMPLETED");
    // Every verdict it holds (preflight, the lag window, verification, baselines) was streamed as it was made.
    expect(got.checks.length).toBeGreaterThanOrEqual(10);
    await expectChecksStreamed(client, m.id);

    // Every id the application saw committed is on the promoted target.
    const ids = new Set(
      (await provider.cluster({ id: "auto-tgt" }).query<{ id: string }>("select id::text from items", [], "app")).map(
        (r) => r.id,
      ),
    );
    expect(load.committed.length).toBeGreaterThan(100);
    expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
    expect(await provider.isFenced({ id: "auto-src" })).toBe(true);
    expect((await provider.describe({ id: "auto-src" })).slots.map((s) => s.name)).not.toContain(
      replicaSlotName("auto-tgt"),
    );
    // The fence's role reached the target with the source's WAL; the promoted target keeps none of it.
    const fenceRoles = async (id: string) =>
      (
        await provider
          .cluster({ id })
          .query<{ n: number }>("select count(*)::int as n from pg_roles where rolname = 'pgshift_fence'")
      )[0]!.n;
    expect(await fenceRoles("auto-tgt")).toBe(0);

    const fin = await unary(client, "FinalizeMigration", { id: m.id });
    expect(fin.migration.phase).toBe("PHASE_COMPLETED");
    expect((await waitForPhase(client, m.id, ["PHASE_FINALIZED"])).phase).toBe("PHASE_FINALIZED");
    expect(await provider.cluster({ id: "auto-src" }).isRunning()).toBe(false);
    // The source is free for a new migration once this one is final; retired, it fails preflight, saying why.
    const again = await unary(client, "CreateMigration", {
      spec: localSpec("auto-db", "auto-src", "auto-tgt-2"),
      request_id: "after-final",
    });
    expect(again.created).toBe(true);
    expect((await waitForPhase(client, again.migration.id, ["PHASE_FAILED", "PHASE_PROVISIONING"])).phase).toBe(
      "PHASE_FAILED",
    );
    expect((await getMigration(client, again.migration.id)).last_error.message).toMatch(/cannot connect to auto-src/);
  });

  it("waits for approval in manual mode, and rolls back after cutover: traffic and the source are back as they were", async () => {
    const { app } = await createSampleSource(provider, "man-src", { rows: 500 });
    // A trap the application role can set: a better-matching public.setval that a superuser rollback must never call.
    const appClient = new pg.Client({ ...(await provider.endpoint({ id: "man-src" })), ...app });
    await appClient.connect();
    await appClient.query(`create table setval_calls (at timestamptz default now());
      create function public.setval(oid, bigint, boolean) returns bigint language sql as 'insert into public.setval_calls default values; select 1::bigint'`);
    await appClient.end();
    const m = (await unary(client, "CreateMigration", { spec: localSpec("man-db", "man-src", "man-tgt") })).migration;
    await waitForPhase(client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getMigration(client, m.id)).phase).toBe("PHASE_READY_FOR_CUTOVER");
    await unary(client, "ApproveCutover", { id: m.id, reason: "window approved" });
    expect((await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED"])).phase).toBe("PHASE_COMPLETED");
    // A COMPLETED migration still owns both sides (it can roll back): neither may take part in another migration.
    const asSource = await unaryError(client, "CreateMigration", {
      spec: localSpec("other-db", "man-tgt", "man-tgt-2"),
    });
    expect(asSource.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(asSource.details).toContain(
      `local:man-tgt (wanted as source) is the target of migration ${m.id} of man-db, in COMPLETED`,
    );
    const asTarget = await unaryError(client, "CreateMigration", {
      spec: localSpec("other-db", "other-src", "man-src"),
    });
    expect(asTarget.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(asTarget.details).toMatch(/"man-src" names an instance that exists already/);
    await unary(client, "RollbackMigration", { id: m.id, reason: "drill" });
    const { phase, events } = await waitForPhase(client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"]);
    expect(phase).toBe("PHASE_ROLLED_BACK");
    expect(events.some((e) => e.transition?.to === "PHASE_ROLLING_BACK")).toBe(true);
    expect(await provider.isFenced({ id: "man-src" })).toBe(false);
    const c = new pg.Client({ ...(await provider.endpoint({ id: "man-src" })), ...app });
    await c.connect();
    expect((await c.query("insert into items (payload) values ('after rollback') returning id")).rowCount).toBe(1);
    // Sequences were carried over by pg_catalog.setval, not by the trap.
    expect((await c.query("select count(*)::int as n from setval_calls")).rows[0].n).toBe(0);
    expect(Number((await c.query("select last_value from items_id_seq")).rows[0].last_value)).toBeGreaterThan(500);
    await c.end();
    // The role the fence let pgshift in with went with the fence.
    expect(
      (
        await provider
          .cluster({ id: "man-src" })
          .query<{ n: number }>("select count(*)::int as n from pg_roles where rolname = 'pgshift_fence'")
      )[0]!.n,
    ).toBe(0);
  });

  it("pauses at a safe point and holds there, then resumes to completion", async () => {
    await createSampleSource(provider, "pause-src", { rows: 100 });
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("pause-db", "pause-src", "pause-tgt", { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    await unary(client, "PauseMigration", { id: m.id, reason: "hold on" });
    // The lag window is 1s: paused, it must not move on however long we wait (three windows here).
    await new Promise((r) => setTimeout(r, 3000));
    const held = await getMigration(client, m.id);
    expect(held.phase).toBe("PHASE_REPLICATING");
    expect(held.paused).toBe(true);
    await unary(client, "ResumeMigration", { id: m.id });
    expect((await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED"])).phase).toBe("PHASE_COMPLETED");
  });

  it("a lag spike inside the window starts the window again; the gate passes only after a whole quiet window", async () => {
    const src = await createSampleSource(provider, "spike-src", { rows: 100 });
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("spike-db", "spike-src", "spike-tgt", {
          lag_policy: { max_lag_bytes: String(64 * 1024), max_lag_time: { seconds: 5 }, window: { seconds: 3 } },
        }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    await new Promise((r) => setTimeout(r, 1500));
    // Well inside the window, the replica falls behind: its replay paused for a second while the source writes (on a
    // busy machine a burst of WAL alone may be replayed as fast as it comes, and show no lag at any sample).
    const tgt = provider.cluster({ id: "spike-tgt" });
    await tgt.query("select pg_wal_replay_pause()");
    const spikeAt = Date.now();
    await src.cluster.query(
      "insert into items (payload) select repeat(md5(g::text), 20) from generate_series(1, 20000) g",
      [],
      "app",
    );
    await new Promise((r) => setTimeout(r, 1000));
    await tgt.query("select pg_wal_replay_resume()");
    const { events } = await waitForPhase(client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
    const restarted = events.find(
      (e) =>
        e.type === "EVENT_TYPE_CHECK_RESULT" &&
        e.check.status === "CHECK_STATUS_WARN" &&
        /window starts again/.test(e.message),
    );
    expect(restarted, events.map((e) => e.message).join(" | ")).toBeDefined();
    const ready = events.find((e) => e.transition?.to === "PHASE_READY_FOR_CUTOVER");
    const readyAt = Date.parse(
      ready.at ? new Date(Number(ready.at.seconds) * 1000 + ready.at.nanos / 1e6).toISOString() : "",
    );
    // Ready no earlier than a whole window after the spike.
    expect(readyAt - spikeAt).toBeGreaterThanOrEqual(3000);
    await unary(client, "AbortMigration", { id: m.id });
    await waitForPhase(client, m.id, ["PHASE_ABORTED"]);
  });

  it("aborts while replicating: the target and its slot are removed, the source untouched", async () => {
    await createSampleSource(provider, "ab-src", { rows: 100 });
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("ab-db", "ab-src", "ab-tgt", { lag_policy: { window: { seconds: 600 } } }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    await unary(client, "AbortMigration", { id: m.id, reason: "not today" });
    expect((await waitForPhase(client, m.id, ["PHASE_ABORTED"])).phase).toBe("PHASE_ABORTED");
    expect(provider.list()).not.toContain("ab-tgt");
    expect((await provider.describe({ id: "ab-src" })).slots).toEqual([]);
    expect(await provider.isFenced({ id: "ab-src" })).toBe(false);
  });

  it("a stale inactive logical slot blocks cutover, named with its size, until an operator drops it; then the migration proceeds", async () => {
    const src = await createSampleSource(provider, "slot-src", { rows: 100 });
    await src.cluster.query("select pg_create_logical_replication_slot('forgotten_cdc', 'pgoutput')", [], "app");
    await src.cluster.query(
      "insert into items (payload) select md5(g::text) from generate_series(1, 20000) g",
      [],
      "app",
    );
    // The dry run sees it too, as what it is there (a WARN: the replica can be made; the cutover will wait), and creates nothing.
    const dry = await unary(client, "RunPreflight", { spec: localSpec("slot-db", "slot-src", "slot-tgt") });
    expect(dry.passed).toBe(true);
    expect(dry.checks.find((c: any) => c.name === "slots.inactive_logical")).toMatchObject({
      status: "CHECK_STATUS_WARN",
      message: expect.stringContaining("the cutover waits at the lag gate"),
    });
    expect(dry.checks.find((c: any) => c.name === "extensions.parity").status).toBe("CHECK_STATUS_PASS");
    expect(provider.list()).not.toContain("slot-tgt");

    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("slot-db", "slot-src", "slot-tgt", { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    // The lag window is 1s; blocked by the slot, the migration must still be replicating well after it (three windows).
    await new Promise((r) => setTimeout(r, 3000));
    const held = await getMigration(client, m.id);
    expect(held.phase).toBe("PHASE_REPLICATING");
    const slot = held.checks.find((c: any) => c.name === "slots.inactive_logical");
    expect(slot.status).toBe("CHECK_STATUS_FAIL");
    expect(slot.measured).toMatch(/forgotten_cdc \(pgoutput, database app\) retains [\d.]+ (KiB|MiB)/);
    expect(slot.remedy).toContain("pg_drop_replication_slot('forgotten_cdc')");
    // We never drop it on our own.
    expect((await provider.describe({ id: "slot-src" })).slots.map((s) => s.name)).toContain("forgotten_cdc");

    // A setting changed on the source meanwhile is reported at the gate.
    await src.cluster.query("alter system set work_mem = '7MB'");
    await src.cluster.query("select pg_reload_conf()");
    expect((await unaryError(client, "DropInactiveSlot", { id: m.id, slot_name: "no_such_slot" })).code).toBe(
      grpc.status.NOT_FOUND,
    );
    const md = new grpc.Metadata();
    md.set("x-pgshift-actor", "oncall@platform");
    const dropped = await unary(
      client,
      "DropInactiveSlot",
      { id: m.id, slot_name: "forgotten_cdc", reason: "consumer decommissioned" },
      md,
    );
    expect(BigInt(dropped.retained_bytes)).toBeGreaterThan(1024n * 1024n);
    const { phase, events } = await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED"]);
    expect(phase).toBe("PHASE_COMPLETED");
    expect(
      events.find(
        (e) => e.type === "EVENT_TYPE_OPERATOR_ACTION" && /dropped inactive logical slot forgotten_cdc/.test(e.message),
      ).actor,
    ).toBe("oncall@platform");
    const done = await getMigration(client, m.id);
    expect(done.checks.find((c: any) => c.name === "slots.inactive_logical").status).toBe("CHECK_STATUS_PASS");
    const params = done.checks.find((c: any) => c.name === "settings.parity");
    expect(params.status).toBe("CHECK_STATUS_WARN");
    expect(params.measured).toMatch(/work_mem: 7168 -> 4096/);
  });

  it("refuses operator actions that do not fit the phase with FAILED_PRECONDITION", async () => {
    const list = await unary(client, "ListMigrations", { phases: ["PHASE_ROLLED_BACK"] });
    const err = await unaryError(client, "AbortMigration", { id: list.migrations[0].id });
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
  });
});
