import { describe, expect, it } from "vitest";
import { CdcConsumer, type Change } from "../testing/cdc/consumer.js";
import { freePort } from "../src/postgres/ports.js";
import { createSampleSource, type CdcSetup } from "../testing/sample.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { unary } from "./helpers/grpc-clients.js";
import { approveExpectingFallback, getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { useService } from "./helpers/fixture.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("CDC continuity: a real pgoutput consumer sees every committed row exactly once, in commit order", () => {
  let metricsPort: number;
  const f = useService("cdc", "cdc-sidecar", async () => {
    metricsPort = await freePort();
    return ["--lease-ms", "3000", "--metrics-port", String(metricsPort)];
  });
  const consumers = f.owned;

  function directed(name: string, cdc: CdcSetup): CdcConsumer {
    const consumer = new CdcConsumer({
      api: `http://${f.svc.address}`,
      databaseName: `${name}-db`,
      slot: cdc.slot,
      publication: cdc.publication,
      ...credentials(cdc),
    });
    consumer.start();
    consumers.push(consumer);
    return consumer;
  }

  /** Starts a migration with a consumer (one following its directives, unless given) and a write load through the f.proxy. */
  async function setup(
    name: string,
    extra: Record<string, unknown> = {},
    startConsumer: (cdc: CdcSetup, port: number) => Promise<CdcConsumer | undefined> = async (cdc) =>
      directed(name, cdc),
  ) {
    const { app, cdc } = await createSampleSource(f.provider, `${name}-src`, { rows: 50, cdc: true });
    const before = Number(
      (
        await f.provider
          .cluster({ id: `${name}-src` })
          .query<{ m: string }>("select max(id)::text as m from items", [], "app")
      )[0]!.m,
    );
    const consumer = await startConsumer(cdc!, f.provider.cluster({ id: `${name}-src` }).port);
    const m = (
      await unary(f.client, "CreateMigration", {
        spec: localSpec(`${name}-db`, `${name}-src`, `${name}-tgt`, {
          cutover_mode: "CUTOVER_MODE_AUTOMATIC",
          ...extra,
        }),
      })
    ).migration;
    const port = await f.proxy.waitForListener(`${name}-db`);
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 50 });
    load.start();
    return { m, consumer, load, before, cdc: cdc! };
  }

  function credentials(c: CdcSetup) {
    return { user: c.user, password: c.password, database: c.database };
  }

  /** Waits until the consumer has seen the newest row of `holder`, then compares the stream with the table. */
  async function expectExactlyOnce(consumer: { readonly changes: Change[] }, holder: string, after: number) {
    const rows = (
      await f.provider
        .cluster({ id: holder })
        .query<{ id: string }>("select id::text from items where items.id > $1 order by items.id", [after], "app")
    ).map((r) => Number(r.id));
    expect(rows.length).toBeGreaterThan(100);
    const newest = rows[rows.length - 1];
    for (let i = 0; i < 300 && !consumer.changes.some((c) => Number(c.row.id) === newest); i++) await sleep(100);
    const streamed = consumer.changes
      .filter((c) => c.table === "items" && c.op === "insert")
      .map((c) => Number(c.row.id));
    const seen = new Set(streamed);
    const lost = rows.filter((id) => !seen.has(id));
    const duplicated = streamed.length - seen.size;
    expect({ lost: lost.length, duplicated }).toEqual({ lost: 0, duplicated: 0 });
    // One writer, one row per transaction: commit order is id order. Rows committed
    // after the table was read (the load may still run) are held to the next check.
    expect(streamed.slice(0, rows.length)).toEqual(rows);
    expect(streamed.slice(rows.length).every((id) => id > newest!)).toBe(true);
    return streamed;
  }

  it("across cutover: handed over on the source at the final LSN, resumed on the target; the source slot kept until finalize", async () => {
    const { m, consumer: c, load, before } = await setup("cut");
    const consumer = c!;
    const { phase, events } = await waitForPhase(f.client, m.id, [
      "PHASE_COMPLETED",
      "PHASE_FAILED",
      "PHASE_ROLLED_BACK",
    ]);
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    await sleep(1500); // writes on the target, streamed from its slot
    await load.stop();
    try {
      const streamed = await expectExactlyOnce(consumer, "cut-tgt", before);
      // Both sides fed the stream: the source up to the final LSN, the target after.
      const from = new Set(consumer.changes.map((c) => c.from));
      const src = await f.provider.endpoint({ id: "cut-src" });
      const tgt = await f.provider.endpoint({ id: "cut-tgt" });
      expect(from).toEqual(new Set([`${src.host}:${src.port}`, `${tgt.host}:${tgt.port}`]));
      expect(load.committed.length).toBeGreaterThan(100);
      const streamedSet = new Set(streamed);
      expect(load.committed.filter((id) => !streamedSet.has(Number(id)))).toEqual([]);

      const got = await getMigration(f.client, m.id);
      const slot = got.cdc_slots.find((s: any) => s.slot_name === "items_cdc");
      expect(slot).toMatchObject({
        plugin: "pgoutput",
        database: "app",
        stage: "CDC_SLOT_STAGE_ON_TARGET",
        publications: ["items_pub"],
      });
      expect(slot.target_consistent_lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      expect(slot.consumer).toMatch(/^pgshift-consumer@/);
      // The consumer following the directives is in the inventory while it watches.
      expect(slot.watching_consumers).toEqual([expect.stringMatching(/^pgshift-consumer:\d+$/)]);
      expect(got.checks.find((c: any) => c.name === "cdc.paused").status).toBe("CHECK_STATUS_PASS");
      const cdcEvents = events.filter((e) => e.type === "EVENT_TYPE_CDC").map((e) => e.message);
      expect(cdcEvents.some((e) => /told to confirm .* and pause/.test(e))).toBe(true);
      // The directives the consumer followed: read the source, pause at the final LSN, resume on the target.
      const actions = consumer.directives.map((d) => d.action);
      expect(actions).toContain(2);
      expect(actions[actions.length - 1]).toBe(3);
      expect(consumer.directives[consumer.directives.length - 1]!.endpoint).toMatchObject({ port: tgt.port });

      // The source keeps the slot, unread, for a rollback until finalize; its WAL retention is shown.
      expect(
        (await f.provider.describe({ id: "cut-src" })).slots
          .filter((s) => s.type === "logical")
          .map((s) => [s.name, s.active]),
      ).toEqual([["items_cdc", false]]);
      expect(slot.received_lsn).toMatch(/\//);
      expect(slot.stream_resumed_at).toBeTruthy();
      expect(Number(slot.retained_wal_bytes)).toBeGreaterThan(0);
      await unary(f.client, "FinalizeMigration", { id: m.id });
      const fin = await waitForPhase(f.client, m.id, ["PHASE_FINALIZED"]);
      // Released before the source was retired (and verified gone then).
      expect(fin.events.map((e) => e.message).join(" | ")).toMatch(/CDC slots kept for a rollback removed/);
      const left = (await f.provider.describe({ id: "cut-tgt" })).slots;
      expect(left.map((s) => [s.name, s.active])).toEqual([["items_cdc", true]]);
    } finally {
      await consumer.stop();
    }
  });

  it("across a rollback after writes on the target: resumed on the source past what it already saw; no orphan slot", async () => {
    // A pause alert threshold below any real pause: the alert must show.
    const {
      m,
      consumer: c,
      load,
      before,
    } = await setup("back", { cdc_policy: { pause_alert_after: { nanos: 1_000_000 } } });
    const consumer = c!;
    const done = await waitForPhase(f.client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"]);
    expect(done.phase, done.events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
    await sleep(1500); // writes on the target
    await unary(f.client, "RollbackMigration", { id: m.id, reason: "cdc test" });
    const { phase, events } = await waitForPhase(f.client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"]);
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
    await sleep(1500); // writes on the source again
    await load.stop();
    try {
      await expectExactlyOnce(consumer, "back-src", before);
      const src = await f.provider.endpoint({ id: "back-src" });
      expect(consumer.changes[consumer.changes.length - 1]!.from).toBe(`${src.host}:${src.port}`);
      const got = await getMigration(f.client, m.id);
      expect(got.cdc_slots[0].source_resume_lsn).toMatch(/\//);
      const alerts = events.filter(
        (e) =>
          e.type === "EVENT_TYPE_CHECK_RESULT" &&
          e.check?.name === "cdc.paused" &&
          e.check.status === "CHECK_STATUS_WARN",
      );
      expect(alerts.length).toBeGreaterThan(0);
      // ...and as a metric Prometheus scrapes.
      const scraped = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const count = new RegExp(`pgshift_cdc_pause_alerts_total\\{[^}]*database_name="back-db"[^}]*\\} (\\d+)`).exec(
        scraped,
      );
      expect(Number(count?.[1])).toBeGreaterThanOrEqual(1);
      expect(scraped).toMatch(/target_info\{[^}]*service_name="pgshift"/);
      // The target keeps no slot; the source keeps only the consumer's, read again.
      expect((await f.provider.describe({ id: "back-tgt" })).slots).toEqual([]);
      expect((await f.provider.describe({ id: "back-src" })).slots.map((s) => [s.name, s.active])).toEqual([
        ["items_cdc", true],
      ]);
    } finally {
      await consumer.stop();
    }
  });

  it("a consumer that ignores the API and reads through the proxy: exactly once across cutover and across rollback", async () => {
    const { app, cdc } = await createSampleSource(f.provider, "plain-src", { rows: 50, cdc: true });
    const m = (
      await unary(f.client, "CreateMigration", {
        spec: localSpec("plain-db", "plain-src", "plain-tgt", { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }),
      })
    ).migration;
    const port = await f.proxy.waitForListener("plain-db");
    // The same listener the application uses: the consumer never learns that the primary changed.
    const consumer = new CdcConsumer({
      api: "http://unused",
      databaseName: "plain-db",
      slot: cdc!.slot,
      publication: cdc!.publication,
      ...credentials(cdc!),
      via: `127.0.0.1:${port}`,
    });
    consumer.start();
    consumers.push(consumer);
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 50 });
    load.start();
    try {
      const done = await waitForPhase(f.client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"]);
      expect(done.phase, done.events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
      await sleep(1500);
      await expectExactlyOnce(consumer, "plain-tgt", 50);
      await unary(f.client, "RollbackMigration", { id: m.id, reason: "plain consumer" });
      const back = await waitForPhase(f.client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"]);
      expect(back.phase, back.events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
      await sleep(1500);
      await load.stop();
      await expectExactlyOnce(consumer, "plain-src", 50);
      expect((await f.provider.describe({ id: "plain-tgt" })).slots).toEqual([]);
    } finally {
      await load.stop();
    }
  });

  it("a consumer down at the fence with changes unread: the cutover falls back at once, nothing waits; restarted, it completes exactly once", async () => {
    const { m, consumer, load, before, cdc } = await setup("down", { cutover_mode: "CUTOVER_MODE_MANUAL" });
    try {
      await waitForPhase(f.client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
      // The consumer drops; the application writes on, so its slot has changes nobody read.
      await consumer!.stop();
      await sleep(300);
      const { got, ms: fellBackMs } = await approveExpectingFallback(f.client, m.id);
      expect(got.phase).toBe("PHASE_REPLICATING");
      expect(got.paused).toBe(true);
      expect(got.last_error.message).toMatch(
        /no consumer reads logical slot items_cdc and it has \d+ change\(s\) committed before the final LSN/,
      );
      expect(await f.provider.isFenced({ id: "down-src" })).toBe(false);
      // Nothing waited on the consumer: well inside any drain timeout.
      console.log(`[cdc] consumer down at the fence: approved -> fallen back and unfenced in ${fellBackMs} ms`);
      expect(fellBackMs).toBeLessThan(10_000);
      const n = load.committed.length;
      for (let i = 0; i < 50 && load.committed.length === n; i++) await sleep(100);
      expect(load.committed.length).toBeGreaterThan(n);

      // Back, it reads what it missed on the source; resumed, the migration completes with the approval it had.
      const again = directed("down", cdc);
      await unary(f.client, "ResumeMigration", { id: m.id, reason: "consumer back" });
      const { phase, events } = await waitForPhase(f.client, m.id, [
        "PHASE_COMPLETED",
        "PHASE_FAILED",
        "PHASE_ROLLED_BACK",
      ]);
      expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
      await sleep(1000);
      await load.stop();
      // One downstream fed by both runs of the consumer: what the first confirmed, the second did not get again.
      const first = consumer!;
      await expectExactlyOnce(
        {
          get changes() {
            return [...first.changes, ...again.changes];
          },
        },
        "down-tgt",
        before,
      );
    } finally {
      await load.stop();
    }
  });
});

describe("CDC steps survive SIGKILL: the consumer's stream stays exactly once", () => {
  // Fixed ports across restarts: the proxy and the consumer reconnect to whichever process runs.
  const f = useService("cdc-kill", "cdc-kill-sidecar", async () => [
    "--lease-ms",
    "2000",
    "--port",
    String(await freePort()),
    "--xds-port",
    String(await freePort()),
  ]);
  const consumers = f.owned;

  for (const phase of ["CDC_PREPARE", "CDC_RESTORE"]) {
    it(`killed on reaching ${phase}, restarted: COMPLETED, every row streamed once, the slot on the target once`, async () => {
      const name = phase.toLowerCase().replace(/_/g, "-");
      const { app, cdc } = await createSampleSource(f.provider, `${name}-src`, { rows: 50, cdc: true });
      const c = cdc!;
      const consumer = new CdcConsumer({
        api: `http://${f.svc.address}`,
        databaseName: `${name}-db`,
        slot: c.slot,
        publication: c.publication,
        user: c.user,
        password: c.password,
        database: c.database,
      });
      consumer.start();
      consumers.push(consumer);
      const m = (
        await unary(f.client, "CreateMigration", {
          spec: localSpec(`${name}-db`, `${name}-src`, `${name}-tgt`, { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }),
        })
      ).migration;
      const load = new WriteLoad({
        host: "127.0.0.1",
        port: await f.proxy.waitForListener(`${name}-db`),
        ...app,
        ratePerSec: 50,
      });
      load.start();
      await waitForPhase(f.client, m.id, [`PHASE_${phase}`, "PHASE_COMPLETED", "PHASE_FAILED"]);
      await f.restart();
      const { phase: end, events } = await waitForPhase(f.client, m.id, [
        "PHASE_COMPLETED",
        "PHASE_FAILED",
        "PHASE_ROLLED_BACK",
      ]);
      expect(end, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
      await sleep(1000);
      await load.stop();
      const rows = (
        await f.provider
          .cluster({ id: `${name}-tgt` })
          .query<{ id: string }>("select id::text from items where items.id > 50 order by items.id", [], "app")
      ).map((r) => Number(r.id));
      const newest = rows[rows.length - 1];
      for (let i = 0; i < 300 && !consumer.changes.some((ch) => Number(ch.row.id) === newest); i++) await sleep(100);
      const streamed = consumer.changes.filter((ch) => ch.table === "items").map((ch) => Number(ch.row.id));
      expect(rows.length).toBeGreaterThan(100);
      if (streamed.length !== rows.length) {
        // What the consumer was told and where the slots are, to tell a lost directive from a lost change.
        const slots = (await f.provider.describe({ id: `${name}-tgt` })).slots.map(
          (s) => `${s.name}:${s.active}:${s.confirmedFlushLsn}`,
        );
        console.log(
          `[cdc-kill] ${phase}: directives ${JSON.stringify(consumer.directives.map((d) => [d.action, d.endpoint?.port, d.drainToLsn, d.resumeFromLsn]))}; target slots ${slots.join(", ")}; ${JSON.stringify(consumer.debugState())}`,
        );
      }
      expect(streamed).toEqual(rows);
      expect(
        (await f.provider.describe({ id: `${name}-tgt` })).slots
          .filter((s) => s.type === "logical" && !s.name.startsWith("pgshift_"))
          .map((s) => s.name),
      ).toEqual([c.slot]);
      // Kept, unread, on the source for a rollback until finalize.
      expect(
        (await f.provider.describe({ id: `${name}-src` })).slots
          .filter((s) => s.type === "logical")
          .map((s) => [s.name, s.active]),
      ).toEqual([[c.slot, false]]);
    });
  }
});
