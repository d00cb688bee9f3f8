import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createSampleSource } from "../testing/sample.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { unary } from "./helpers/grpc-clients.js";
import { approveExpectingFallback, getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { useService } from "./helpers/fixture.js";
import { RecvLogical } from "./helpers/recvlogical.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROWS = 50;

/**
 * PostgreSQL's own pg_recvlogical (test_decoding) as the downstream consumer:
 * a dedicated REPLICATION role, a slot on the source, connected through the
 * proxy's listener, confirming every second, reconnecting by itself 5 s after
 * a drop. It knows nothing of pgshift. Each test holds its stream to the
 * table: nothing lost, nothing twice, commit order.
 */
describe("CDC with pg_recvlogical through the proxy: nothing lost or duplicated, and nothing waits on it", () => {
  const f = useService("recv", "recv-sidecar", async () => ["--lease-ms", "3000"]);

  async function start(name: string, opts: { consumer: boolean; manual?: boolean }) {
    const { app, cluster } = await createSampleSource(f.provider, `${name}-src`, { rows: ROWS });
    let consumer: RecvLogical | undefined;
    const m = (
      await unary(f.client, "CreateMigration", {
        spec: localSpec(`${name}-db`, `${name}-src`, `${name}-tgt`, {
          cutover_mode: opts.manual ? "CUTOVER_MODE_MANUAL" : "CUTOVER_MODE_AUTOMATIC",
        }),
      })
    ).migration;
    const port = await f.proxy.waitForListener(`${name}-db`);
    if (opts.consumer) {
      const password = randomBytes(9).toString("hex");
      await cluster.query(`create role cdc login replication password '${password}'`);
      await cluster.query("select pg_create_logical_replication_slot('items_recv', 'test_decoding')", [], "app");
      consumer = new RecvLogical({
        port,
        user: "cdc",
        password,
        database: "app",
        slot: "items_recv",
        file: join(f.dir, `${name}.recv`),
      });
      consumer.start();
      f.owned.push(consumer);
    }
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 50 });
    load.start();
    f.owned.push(load);
    return { m, consumer, load, port, app };
  }

  async function expectCompleted(id: string) {
    const { phase, events } = await waitForPhase(f.client, id, [
      "PHASE_COMPLETED",
      "PHASE_FAILED",
      "PHASE_ROLLED_BACK",
    ]);
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
  }

  async function rollBack(id: string): Promise<number> {
    const t0 = Date.now();
    await unary(f.client, "RollbackMigration", { id, reason: "pg_recvlogical test" });
    const { phase, events } = await waitForPhase(f.client, id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"]);
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
    return Date.now() - t0;
  }

  async function readerOn(instance: string): Promise<boolean> {
    return (await f.provider.describe({ id: instance })).slots.some((s) => s.name === "items_recv" && s.active);
  }

  async function waitReaderOn(instance: string) {
    for (let i = 0; i < 150 && !(await readerOn(instance)); i++) await sleep(100);
    expect(await readerOn(instance)).toBe(true);
  }

  /** Stops the consumer cleanly: writes paused long enough for it to confirm all it wrote (it confirms every second), then SIGINT. */
  async function stopQuietly(consumer: RecvLogical, load: WriteLoad, app: object, port: number): Promise<WriteLoad> {
    await load.stop();
    await sleep(2500);
    await consumer.stop();
    const next = new WriteLoad({
      host: "127.0.0.1",
      port,
      ...(app as { user: string; password: string; database: string }),
      ratePerSec: 50,
    });
    next.start();
    f.owned.push(next);
    return next;
  }

  /** Waits for the consumer to stream the newest row of `holder`, then compares stream and table. */
  async function expectStreamMatches(consumer: RecvLogical, holder: string, label: string) {
    const rows = (
      await f.provider
        .cluster({ id: holder })
        .query<{ id: string }>("select id::text from items where items.id > $1 order by items.id", [ROWS], "app")
    ).map((r) => Number(r.id));
    expect(rows.length).toBeGreaterThan(100);
    const newest = rows[rows.length - 1]!;
    for (let i = 0; i < 200 && !consumer.insertedIds().includes(newest); i++) await sleep(100);
    const streamed = consumer.insertedIds().filter((id) => id > ROWS);
    const seen = new Set(streamed);
    const lost = rows.filter((id) => !seen.has(id)).length;
    const duplicated = streamed.length - seen.size;
    console.log(
      `[recvlogical] ${label}: ${rows.length} rows, ${streamed.length} streamed, lost ${lost}, duplicated ${duplicated}`,
    );
    const at = rows.findIndex((id, i) => streamed[i] !== id);
    if (at >= 0 || lost > 0) {
      const from = Math.max(0, at - 3);
      console.log(
        `[recvlogical] ${label}: first difference at ${at}: table ${JSON.stringify(rows.slice(from, at + 5))} stream ${JSON.stringify(streamed.slice(from, at + 5))}`,
      );
      console.log(
        consumer.stderr
          .split("\n")
          .filter((l) => /starting|disconnected|error|could not/i.test(l))
          .join("\n"),
      );
    }
    expect({ lost, duplicated }).toEqual({ lost: 0, duplicated: 0 });
    // One writer, one row per transaction: commit order is id order.
    expect(streamed.slice(0, rows.length)).toEqual(rows);
  }

  it("cutover costs the application nothing more with it attached; a rollback 0-3 s after COMPLETED, while it sleeps, loses nothing", async () => {
    // The same cutover without a consumer, for the application's longest gap to compare with.
    const plain = await start("plain", { consumer: false });
    await expectCompleted(plain.m.id);
    const gapWithout = plain.load.longestGapMs;
    await plain.load.stop();

    const { m, consumer, load } = await start("asleep", { consumer: true });
    await expectCompleted(m.id);
    const gapWith = load.longestGapMs;
    console.log(
      `[recvlogical] longest application write gap across cutover: ${gapWithout} ms without a consumer, ${gapWith} ms with pg_recvlogical attached`,
    );
    // Waiting for its confirmation (it confirms once a second) would add up to a second; the hand-over adds only its own work.
    expect(gapWith).toBeLessThan(gapWithout + 1000);

    // Its stream was handed over at the fence; it sleeps 5 s before reconnecting. Once the application has written
    // on the target (what the sleeping consumer has not seen), roll back.
    const written = load.committed.length;
    while (load.committed.length < written + 5) await sleep(20);
    const asleep = !(await readerOn("asleep-tgt"));
    // What this test is about: the rollback begins while the consumer sleeps (it retries every 5 s; this is about 1 s in).
    expect(asleep, "pg_recvlogical had reconnected to the target before the rollback began").toBe(true);
    load.longestGapMs = 0;
    const rollbackMs = await rollBack(m.id);
    console.log(
      `[recvlogical] rollback while the consumer ${asleep ? "slept" : "read the target"}: ROLLED_BACK in ${rollbackMs} ms, application gap ${load.longestGapMs} ms`,
    );
    expect(load.longestGapMs).toBeLessThan(5_000);
    await sleep(1500); // writes on the source again
    await load.stop();
    await expectStreamMatches(consumer!, "asleep-src", "cutover, then rollback while it slept");
    const got = await getMigration(f.client, m.id);
    const slot = got.cdc_slots.find((s: any) => s.slot_name === "items_recv");
    expect(slot.received_lsn).toMatch(/\//);
    expect(slot.source_resume_lsn).toMatch(/\//);
    // How much the source had to stream that the consumer had not seen on the target: printed, not asserted. Whether
    // any target write fell between its hand-over and the rollback depends on timing (a loaded machine gave 0);
    // what must hold whatever it is, nothing lost or duplicated, is asserted above.
    console.log(
      `[recvlogical] asleep: ${asleep}; to stream from the source after the rollback: ${slot.to_stream_from_source}`,
    );
  });

  it("a rollback after it reconnected to the target: handed back without waiting, nothing lost or twice; cdc.paused measures its real pause", async () => {
    const { m, consumer, load } = await start("awake", { consumer: true });
    await expectCompleted(m.id);
    await waitReaderOn("awake-tgt");
    // What the consumer experienced: its stream stopped at the fence and came back after its own 5 s retry.
    let got = await getMigration(f.client, m.id);
    for (let i = 0; i < 40 && !got.checks.some((c: any) => c.name === "cdc.paused"); i++) {
      await sleep(100);
      got = await getMigration(f.client, m.id);
    }
    const pause = got.checks.find((c: any) => c.name === "cdc.paused");
    const ms = Number(/up to (\d+) ms/.exec(pause.measured)?.[1]);
    console.log(`[recvlogical] cdc.paused after cutover: ${pause.status} ${pause.measured}`);
    expect(ms).toBeGreaterThan(3_000);
    await sleep(1000); // it reads the target's writes
    load.longestGapMs = 0;
    const rollbackMs = await rollBack(m.id);
    console.log(
      `[recvlogical] rollback with the consumer reading the target: ROLLED_BACK in ${rollbackMs} ms, application gap ${load.longestGapMs} ms`,
    );
    expect(load.longestGapMs).toBeLessThan(5_000);
    await sleep(1500);
    await load.stop();
    await expectStreamMatches(consumer!, "awake-src", "rollback after it reconnected");
    expect(consumer!.insertedIds().length).toBeGreaterThan(0);
  });

  it("down at the fence: the cutover falls back at once; gone for good at a rollback: it completes in seconds and nothing is skipped when it returns", async () => {
    const { m, consumer: c, load: first, port, app } = await start("gone", { consumer: true, manual: true });
    const consumer = c!;
    await waitForPhase(f.client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
    let load = await stopQuietly(consumer, first, app, port);
    await sleep(500); // changes it has not read
    const fallback = await approveExpectingFallback(f.client, m.id);
    let got = fallback.got;
    console.log(`[recvlogical] consumer down at the fence: fallen back and unfenced ${fallback.ms} ms after approval`);
    expect(got.phase).toBe("PHASE_REPLICATING");
    expect(got.last_error.message).toMatch(/no consumer reads logical slot items_recv and it has \d+ change\(s\)/);
    expect(await f.provider.isFenced({ id: "gone-src" })).toBe(false);

    // It returns and reads what it missed on the source; the migration resumes and cuts over.
    consumer.start();
    await waitReaderOn("gone-src");
    await unary(f.client, "ResumeMigration", { id: m.id, reason: "consumer back" });
    await expectCompleted(m.id);
    await waitReaderOn("gone-tgt");
    await sleep(1000);

    // Now it goes for good, and the target takes writes it never reads.
    load = await stopQuietly(consumer, load, app, port);
    await sleep(1000);
    const rollbackMs = await rollBack(m.id);
    console.log(
      `[recvlogical] rollback with the consumer gone: ROLLED_BACK in ${rollbackMs} ms, application gap ${load.longestGapMs} ms`,
    );
    // Seconds, not the consumer: a rollback that waited for it would never end (it is gone for good).
    // The bound set for this: a gone consumer must not stall a rollback (7.1 s in a fresh-clone CI run on this machine).
    expect(rollbackMs).toBeLessThan(15_000);
    got = await getMigration(f.client, m.id);
    const slot = got.cdc_slots.find((s: any) => s.slot_name === "items_recv");
    expect(slot.to_stream_from_source).toBeGreaterThan(0);
    expect(slot.source_resume_lsn).toMatch(/\//);
    expect(got.checks.find((x: any) => x.name === "cdc.paused").measured).toMatch(/no reader yet for items_recv/);

    // Back much later: it streams from the source what it had not read on the target, then the source's own writes.
    await sleep(1000);
    consumer.start();
    await sleep(1000);
    await load.stop();
    await expectStreamMatches(consumer, "gone-src", "down at the fence, then gone at the rollback");
  });
});
