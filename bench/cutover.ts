/**
 * Cutover figures on the embedded default, each cutover under a live write
 * load through the local xDS proxy:
 *   - write-unavailability window (longest gap between commits the application saw),
 *   - promotion time (the PROMOTING phase),
 *   - routing convergence (the ROUTING phase: route stored -> every proxy ACKed),
 * as median and p95 over several cutovers, beside the limit measured in the
 * same run: a bare PostgreSQL promotion of a streaming standby
 * (pg_promote(false), then a committed write on it); then many migrations at
 * once through one service: throughput and the service's memory.
 *
 *   npm run bench:cutover                 # 5 cutovers, then 20 concurrent migrations
 *   npm run bench:cutover -- 9 10         # 9 cutovers, then 10 concurrent
 *   npm run bench:cutover -- 5 0 --cdc    # each source with a logical slot and a directed CDC consumer
 *   npm run bench:cutover -- 5 0 --realistic  # each source with the realistic schema, a load touching every table
 *   npm run bench:cutover -- 5 0 --heavy      # and 4 unthrottled writers through the proxy beside the 200 rows/s probe
 *   npm run bench:cutover -- 5 0 --rollback   # after each cutover, a rollback under the same load: its window instead
 */
import { rmSync } from "node:fs";
import { newWorkDir } from "../src/postgres/reach.js";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  CutoverMode,
  EventType,
  MigrationService,
  Phase,
  Provider,
  type CutoverTiming,
} from "../src/gen/migration/v1/migration_pb.js";
import { parseServiceConfig } from "../src/config.js";
import { LocalCluster } from "../src/postgres/cluster.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { XdsTcpProxy } from "../src/proxy/xds-tcp-proxy.js";
import { startService } from "../src/service/start.js";
import { createLogger } from "../src/telemetry/log.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { createRealisticSource, RealisticLoad } from "../testing/workload/realistic.js";
import { CdcConsumer } from "../testing/cdc/consumer.js";

const withCdc = process.argv.includes("--cdc");
/** Sources with the realistic schema (src/workload/realistic.ts) under a load touching every table, 50 transactions/s. */
const realistic = process.argv.includes("--realistic");
/** Four writers inserting as fast as they can through the proxy, reconnecting as the probe does, beside the probe. */
const heavy = process.argv.includes("--heavy");
/** Each cutover followed by a rollback under the same load; the figures are the rollback's. */
const rollback = process.argv.includes("--rollback");
const [cutovers = 5, concurrent = 20] = process.argv
  .slice(2)
  .filter((a) => !a.startsWith("--"))
  .map(Number);

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
  return `median ${q(0.5).toFixed(0)} ms, p95 ${q(0.95).toFixed(0)} ms (min ${s[0]!.toFixed(0)}, max ${s[s.length - 1]!.toFixed(0)}, n=${s.length})`;
}

const dataDir = newWorkDir("pgshift-bench-");
const config = {
  ...parseServiceConfig(["--insecure", "--port", "0", "--xds-port", "0", "--data-dir", dataDir]),
  logLevel: "error" as const,
};
const provider = new LocalProvider(join(dataDir, "local"));
const service = await startService(config, createLogger("error"));
const client = createClient(MigrationService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${service.port}` }));
const proxy = new XdsTcpProxy({ xds: `127.0.0.1:${service.xdsPort}`, nodeId: "bench-sidecar", listenPort: () => 0 });
await proxy.start();

/** Runs one migration to COMPLETED and returns its phase durations (ms), by phase entered. */
async function migrate(
  name: string,
  opts: { load: boolean },
): Promise<{ durations: Map<string, number>; windowMs?: number; pausedMs?: number; parts: BreakdownRun }> {
  const rich =
    realistic && opts.load ? await createRealisticSource(provider, `${name}-src`, { rows: 2000 }) : undefined;
  const { app, cdc } = rich
    ? { app: rich.app, cdc: undefined }
    : await createSampleSource(provider, `${name}-src`, { rows: 2000, cdc: withCdc && opts.load });
  const consumer = cdc
    ? new CdcConsumer({
        api: `http://127.0.0.1:${service.port}`,
        databaseName: `${name}-db`,
        slot: cdc.slot,
        publication: cdc.publication,
        user: cdc.user,
        password: cdc.password,
        database: cdc.database,
      })
    : undefined;
  consumer?.start();
  const { migration } = await client.createMigration({
    spec: {
      databaseName: `${name}-db`,
      provider: Provider.LOCAL,
      source: { id: `${name}-src` },
      target: { id: `${name}-tgt` },
      cutoverMode: CutoverMode.AUTOMATIC,
      lagPolicy: { maxLagBytes: 16n * 1024n * 1024n, maxLagTime: { seconds: 5n }, window: { seconds: 2n } },
      ...(rich
        ? {
            schemaPolicy: {
              disposableUnloggedTables: rich.schemaPolicy.disposable_unlogged_tables,
              replicaIdentityFullTables: rich.schemaPolicy.replica_identity_full_tables,
            },
          }
        : {}),
    },
  });
  let load: WriteLoad | RealisticLoad | undefined;
  const writers: WriteLoad[] = [];
  let rolledBackAt: number | undefined;
  const entered = new Map<string, number>();
  for await (const res of client.watchMigration({ id: migration!.id })) {
    const e = res.event!;
    if (e.type === EventType.PHASE_CHANGED && e.transition && e.at)
      entered.set(Phase[e.transition.to]!, timestampDate(e.at).getTime());
    if (opts.load && !load && res.phase === Phase.REPLICATING) {
      const port = await proxy.waitForListener(`${name}-db`);
      load = rich
        ? new RealisticLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 50 })
        : new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 200 });
      load.start();
      if (heavy && !rich)
        for (let w = 0; w < 4; w++) {
          writers.push(new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 0 }));
          writers[w]!.start();
        }
    }
    if (res.phase === Phase.COMPLETED && opts.load && rollback && rolledBackAt === undefined) {
      // A moment on the target first, as a rollback would come after some traffic there.
      await new Promise((r) => setTimeout(r, 1000));
      rolledBackAt = Date.now();
      await client.rollbackMigration({ id: migration!.id, reason: "bench --rollback" });
      continue;
    }
    if (res.phase === Phase.COMPLETED && !(opts.load && rollback)) break;
    if (res.phase === Phase.ROLLED_BACK && rolledBackAt !== undefined) break;
    if ([Phase.FAILED, Phase.ROLLED_BACK, Phase.ABORTED].includes(res.phase))
      throw new Error(`${name} ended ${Phase[res.phase]}: ${e.message}`);
  }
  await new Promise((r) => setTimeout(r, 300));
  await Promise.all(writers.map((w) => w.stop()));
  await load?.stop();
  await consumer?.stop();
  const final = (await client.getMigration({ id: migration!.id })).migration!;
  const paused = final.checks.find((c) => c.name === "cdc.paused");
  const pausedMs = paused ? Number(/stopped for up to (\d+) ms/.exec(paused.measured)?.[1]) : undefined;
  const order = [...entered.entries()].sort((a, b) => a[1] - b[1]);
  const durations = new Map<string, number>();
  for (let i = 0; i < order.length - 1; i++) durations.set(order[i]![0], order[i + 1]![1] - order[i]![1]);
  const timing = rollback && opts.load ? final.rollback : final.cutover;
  // The longest gap any writer saw: over the whole run for a cutover, from the rollback's request on for a rollback.
  const loads = [...(load ? [load] : []), ...writers];
  const windowMs = loads.length
    ? Math.max(
        ...loads.map((l) =>
          rolledBackAt === undefined || !(l instanceof WriteLoad) ? l.longestGapMs : gapSince(l, rolledBackAt),
        ),
      )
    : undefined;
  if (writers.length)
    process.stderr.write(`  unthrottled writers: ${writers.reduce((n, w) => n + w.committed.length, 0)} commits\n`);
  return { durations, windowMs, pausedMs, parts: breakdownOf(timing, load) };
}

/** The longest gap between a writer's commits that ends after `from` (Date.now() time). */
function gapSince(load: WriteLoad, from: number): number {
  const t = load.committedAt;
  let longest = 0;
  for (let i = 1; i < t.length; i++) if (t[i]! >= from) longest = Math.max(longest, t[i]! - t[i - 1]!);
  return longest;
}

/** One cutover's parts (start offset and duration, ms, by name), with the application's first commit after it. */
type BreakdownRun = Map<string, { phase: string; start: number; ms: number }>;

const durationMs = (d?: { seconds: bigint; nanos: number }) => (d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0);

function breakdownOf(cutover: CutoverTiming | undefined, load: WriteLoad | RealisticLoad | undefined): BreakdownRun {
  const parts: BreakdownRun = new Map();
  if (!cutover?.startedAt) return parts;
  for (const p of cutover.parts) {
    // A part run twice (cdc_restore in PROMOTING, then confirmed in CDC_RESTORE) counts once, from its first start.
    const prev = parts.get(p.name);
    const start = durationMs(p.offset);
    const ms = durationMs(p.duration);
    parts.set(p.name, prev ? { ...prev, ms: prev.ms + ms } : { phase: Phase[p.phase] ?? "", start, ms });
  }
  const started = timestampDate(cutover.startedAt).getTime();
  // Routed when the last ACK came (a rollback goes on after it: it watches for CDC readers, compares the data).
  const ack = parts.get("ack");
  const ended = ack
    ? started + ack.start + ack.ms
    : cutover.endedAt
      ? timestampDate(cutover.endedAt).getTime()
      : undefined;
  const commits = load instanceof WriteLoad ? load.committedAt : [];
  const first = ended === undefined ? undefined : commits.find((t) => t >= ended);
  // From the last ACK (the window's end as the engine sees it) to the application's next commit through the proxy.
  if (first !== undefined && ended !== undefined)
    parts.set("app_first_commit", { phase: "after the last ACK", start: ended - started, ms: first - ended });
  return parts;
}

/** Each part: its phase, when it starts in the window and how long it takes, median and p95 over the runs. */
function printBreakdown(runs: BreakdownRun[]): void {
  const names = [...new Set(runs.flatMap((r) => [...r.keys()]))];
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows = names
    .map((name) => {
      const seen = runs.map((r) => r.get(name)).filter((p) => p !== undefined);
      return { name, phase: seen[0]!.phase, start: med(seen.map((p) => p.start)), ms: seen.map((p) => p.ms) };
    })
    .sort((a, b) => a.start - b.start);
  console.log(
    `  the ${rollback ? "rollback's" : "window's"} parts (from GetMigration's ${rollback ? "rollback" : "cutover"} timing; side-by-side parts overlap):`,
  );
  for (const r of rows)
    console.log(`    +${r.start.toFixed(0).padStart(4)} ms  ${`${r.name} [${r.phase}]`.padEnd(44)} ${stats(r.ms)}`);
}

/**
 * The physical limit of a cutover window here: a primary and a streaming
 * standby, nothing of ours in between; from pg_promote(false) (polling
 * pg_is_in_recovery() on an open connection) to a committed write on the new
 * primary. pg_promote(wait => true) polls ten times a second and would
 * report more than promotion takes.
 */
async function barePromotionMs(name: string): Promise<number> {
  await provider.createCluster(`${name}-src`);
  const source = { id: `${name}-src` };
  const target = { id: `${name}-tgt` };
  await provider.createReplica(source, target, `bench-${name}`);
  await provider.waitForReplay(target, await provider.currentLsn(source), 60_000);
  return provider.sql(target).session(async (c) => {
    const t0 = performance.now();
    await c.query("select pg_promote(false)");
    while ((await c.query<{ r: boolean }>("select pg_is_in_recovery() as r")).rows[0]!.r);
    await c.query("create table if not exists public.pgshift_bench_write (x int)");
    await c.query("insert into public.pgshift_bench_write values (1)");
    return performance.now() - t0;
  });
}

try {
  const bare: number[] = [];
  for (let i = 0; i < cutovers; i++) bare.push(await barePromotionMs(`bare${i}`));
  const windows: number[] = [];
  const promotion: number[] = [];
  const routing: number[] = [];
  const cutoverPath: number[] = [];
  const cdcPaused: number[] = [];
  const cdcSteps: number[] = [];
  const breakdown: BreakdownRun[] = [];
  const rollingBack: number[] = [];
  for (let i = 0; i < cutovers; i++) {
    const { durations, windowMs, pausedMs, parts } = await migrate(`cut${i}`, { load: true });
    breakdown.push(parts);
    if (pausedMs !== undefined) cdcPaused.push(pausedMs);
    windows.push(windowMs!);
    promotion.push(durations.get("PROMOTING")!);
    routing.push(durations.get("ROUTING")!);
    if (durations.has("ROLLING_BACK")) rollingBack.push(durations.get("ROLLING_BACK")!);
    cdcSteps.push((durations.get("CDC_PREPARE") ?? 0) + (durations.get("CDC_RESTORE") ?? 0));
    cutoverPath.push(
      ["QUIESCING", "FINAL_SYNC", "CDC_PREPARE", "PROMOTING", "CDC_RESTORE", "ROUTING"].reduce(
        (n, p) => n + (durations.get(p) ?? 0),
        0,
      ),
    );
    process.stderr.write(
      `${rollback ? "rollback" : "cutover"} ${i + 1}/${cutovers}: window ${windowMs!.toFixed(0)} ms\n`,
    );
  }
  console.log(
    `${rollback ? "rollbacks (each after a cutover)" : "cutovers"} under ${realistic ? "a load of 50 transactions/s touching every table of a realistic schema" : heavy ? "a 200 rows/s probe and 4 unthrottled writers" : "a 200 rows/s write load"} through the xDS proxy (${cutovers} runs${withCdc ? ", each with a logical slot and a directed CDC consumer" : ""})`,
  );
  console.log(`  write-unavailability window: ${stats(windows)}`);
  console.log(`  limit: a bare pg_promote(false) to a committed write on the standby: ${stats(bare)}`);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`  window / limit (medians): ${(median(windows) / median(bare)).toFixed(1)}x`);
  if (rollback) console.log(`  the rollback (ROLLING_BACK, request to routed back): ${stats(rollingBack)}`);
  else {
    console.log(`  promotion (PROMOTING):        ${stats(promotion)}`);
    console.log(`  routing convergence (ROUTING): ${stats(routing)}`);
    console.log(`  fence -> routed (QUIESCING..ROUTING): ${stats(cutoverPath)}`);
  }
  if (withCdc) console.log(`  CDC steps (CDC_PREPARE + CDC_RESTORE): ${stats(cdcSteps)}`);
  if (cdcPaused.length > 0) console.log(`  CDC consumers' streams stopped: ${stats(cdcPaused)}`);
  printBreakdown(breakdown);

  if (concurrent > 0) {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    const t0 = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: concurrent }, (_, i) => migrate(`many${i}`, { load: false })),
    );
    const secs = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const ok = results.filter((r) => r.status === "fulfilled").length;
    console.log(
      `${concurrent} migrations at once through one service (each: new source, replica, 2 s lag window, cutover)`,
    );
    console.log(
      `  completed ${ok}/${concurrent} in ${secs.toFixed(1)} s: ${((ok / secs) * 60).toFixed(1)} migrations/min`,
    );
    console.log(
      `  service process memory: rss ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, peak ${(peakRss / 2 ** 20).toFixed(0)} MiB (includes the bench's own clients)`,
    );
    for (const r of results) if (r.status === "rejected") console.log(`  failed: ${String(r.reason)}`);
  }
} finally {
  await proxy.stop();
  await service.stop();
  for (const name of provider.list())
    await provider
      .cluster({ id: name })
      .destroy()
      .catch(() => {});
  await LocalCluster.load(join(dataDir, "store"))?.destroy();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(0);
