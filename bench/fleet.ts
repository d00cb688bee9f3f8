/**
 * A fleet campaign at scale: N registered databases (default 400) migrated through every phase to COMPLETED by one
 * campaign (concurrency 50 in flight, 10 cutovers at once), on the in-memory fake provider (each call waits as long
 * as the real one roughly does) with the real store, engine, campaign runner and API; first by one replica, then by
 * three sharing the store. Prints completed count, wall time, peak RSS per replica, store transactions per second and
 * the API's p99 (GetMigration and ListMigrations called throughout), and last a JSON line.
 *
 *   npm run bench:fleet                 # 400 databases, 1 then 3 replicas
 *   npm run bench:fleet -- 100 1        # 100 databases, one replica only
 */
import { maxOverlap } from "../testing/overlap.js";
import { fork } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { CampaignService, CampaignState } from "../src/gen/migration/v1/campaign_pb.js";
import { MigrationService, Provider as ProviderKind } from "../src/gen/migration/v1/migration_pb.js";
import { LocalCluster } from "../src/postgres/cluster.js";
import { newWorkDir } from "../src/postgres/reach.js";
import type { Provider } from "../src/providers/provider.js";
import { parseServiceConfig } from "../src/config.js";
import { createLogger } from "../src/telemetry/log.js";
import { startService } from "../src/service/start.js";
import { FakeProvider } from "../test/helpers/fake-provider.js";
import { FakeActivities } from "../test/helpers/fake-engine.js";

const self = new URL(import.meta.url).pathname;
const IN_FLIGHT = 50;
const CUTOVERS = 10;
const GOAL_RSS_MIB = 1024;

/** Roughly what each call takes on a real platform (local clusters: a replica is a base backup, a promotion a checkpoint). */
const LATENCY_MS: Partial<Record<keyof Provider, number>> = {
  describe: 15,
  platformChecks: 20,
  exists: 10,
  createReplica: 2000,
  replicationStatus: 5,
  walGenerationRate: 5,
  currentLsn: 3,
  fence: 20,
  fencedPosition: 5,
  intruders: 5,
  unfence: 20,
  waitForReplay: 10,
  promote: 300,
  endpoint: 2,
  storage: 5,
};

/** A fake provider whose calls take their time: the engine waits on them as on the real thing. */
function slowed(fake: FakeProvider): Provider {
  return new Proxy(fake, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      const ms = LATENCY_MS[prop as keyof Provider];
      if (typeof v !== "function" || !ms) return v;
      return async (...args: unknown[]) => {
        await new Promise((r) => setTimeout(r, ms * (0.8 + Math.random() * 0.4)));
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Provider;
}

type ReplicaMsg = { kind: "listening"; port: number } | { kind: "rss"; mib: number };

/** One replica: the real service, every instance call on its own fake provider holding the fleet's sources. */
async function replica(dataDir: string, databases: number, databaseUrl?: string): Promise<void> {
  const config = parseServiceConfig([
    "--insecure",
    "--port",
    "0",
    "--xds-port",
    "0",
    "--data-dir",
    dataDir,
    "--baseline-sample-ms",
    "200",
    "--log-level",
    "error",
    ...(databaseUrl ? ["--database-url", databaseUrl] : []),
  ]);
  const fake = new FakeProvider();
  for (let i = 0; i < databases; i++) fake.addSource(`src-${i}`);
  const provider = slowed(fake);
  const svc = await startService(
    config,
    createLogger(config.logLevel),
    {},
    {
      providers: { providers: () => provider, providerAvailable: () => undefined },
      activities: new FakeActivities(fake),
    },
  );
  process.send?.({ kind: "listening", port: svc.port } satisfies ReplicaMsg);
  let peak = 0;
  setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
    process.send?.({ kind: "rss", mib: peak / 2 ** 20 } satisfies ReplicaMsg);
  }, 250).unref();
  process.on("SIGTERM", () => void svc.stop().then(() => process.exit(0)));
}

function startReplica(dataDir: string, databases: number, databaseUrl?: string) {
  const child = fork(self, ["--replica", dataDir, String(databases), databaseUrl ?? ""], {
    execArgv: ["--import", "tsx"],
    stdio: "inherit",
  });
  let peak = 0;
  child.on("message", (m: ReplicaMsg) => {
    if (m.kind === "rss") peak = Math.max(peak, m.mib);
  });
  const port = new Promise<number>((res, rej) => {
    child.on("message", (m: ReplicaMsg) => m.kind === "listening" && res(m.port));
    child.once("exit", (code) => rej(new Error(`replica exited (${code}) before listening`)));
  });
  return { child, port, peak: () => peak };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))] ?? NaN;
}

async function storeTransactions(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const r = await c.query<{ n: string }>(
    "select xact_commit + xact_rollback as n from pg_stat_database where datname = current_database()",
  );
  await c.end();
  return Number(r.rows[0]!.n);
}

/** From the store's event log: the most migrations in flight, and in cutover, at once. */
async function observedConcurrency(url: string): Promise<{ inFlight: number; cutovers: number }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const r = await c.query<{ created: Date; quiescing: Date | null; completed: Date | null }>(`
    select min(at) filter (where type = 'CREATED') as created,
           min(at) filter (where phase_to = 'QUIESCING') as quiescing,
           min(at) filter (where phase_to = 'COMPLETED') as completed
      from events group by migration_id`);
  await c.end();
  const end = (d: Date | null) => (d ? d.getTime() : Date.now());
  return {
    inFlight: maxOverlap(r.rows.map((x) => [x.created.getTime(), end(x.completed)])),
    cutovers: maxOverlap(r.rows.filter((x) => x.quiescing).map((x) => [x.quiescing!.getTime(), end(x.completed)])),
  };
}

async function run(databases: number, replicas: number) {
  const dir = newWorkDir("pgshift-fleet-");
  const procs: ReturnType<typeof startReplica>[] = [];
  try {
    procs.push(startReplica(join(dir, "r0"), databases));
    const port = await procs[0]!.port;
    const url = LocalCluster.load(join(dir, "r0", "store"))!.url("pgshift");
    for (let i = 1; i < replicas; i++) procs.push(startReplica(join(dir, `r${i}`), databases, url));
    await Promise.all(procs.map((p) => p.port));
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
    const migrations = createClient(MigrationService, transport);
    const campaigns = createClient(CampaignService, transport);
    for (let i = 0; i < databases; i += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, databases - i) }, (_, k) =>
          migrations.registerDatabase({
            database: {
              name: `fleet-${i + k}`,
              provider: ProviderKind.LOCAL,
              instances: [{ id: `src-${i + k}` }],
              team: `team-${(i + k) % 8}`,
              labels: { fleet: "bench" },
            },
          }),
        ),
      );
    }
    const tx0 = await storeTransactions(url);
    const t0 = performance.now();
    const { campaign } = await campaigns.createCampaign({
      spec: {
        name: "bench",
        select: { labels: { fleet: "bench" } },
        targets: { idTemplate: "{source}-aurora" },
        template: {
          lagPolicy: { maxLagBytes: 64n * 1024n * 1024n, maxLagTime: { seconds: 5n }, window: { seconds: 1n } },
        },
        waveSizes: [databases],
        maxReplicating: IN_FLIGHT,
        maxCutovers: CUTOVERS,
      },
    });
    const id = campaign!.id;
    // The API as teams use it during the campaign: a migration's page and the fleet's list, one after the other.
    const latencies: number[] = [];
    let done = false;
    const load = (async () => {
      while (!done) {
        const ids = (await migrations.listMigrations({ pageSize: 50 })).migrations.map((m) => m.id);
        const t = performance.now();
        await migrations.listMigrations({ pageSize: 50 });
        latencies.push(performance.now() - t);
        if (ids[0]) {
          const t1 = performance.now();
          await migrations.getMigration({ id: ids[Math.floor(Math.random() * ids.length)]! });
          latencies.push(performance.now() - t1);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    let completed = 0;
    for (;;) {
      const c = (await campaigns.getCampaign({ id })).campaign!;
      completed = c.phases.COMPLETED ?? 0;
      if (c.state !== CampaignState.RUNNING) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    const wallS = (performance.now() - t0) / 1000;
    done = true;
    await load;
    const tx = (await storeTransactions(url)) - tx0;
    const peaks = procs.map((p) => p.peak());
    const seen = await observedConcurrency(url);
    const result = {
      migrations: databases,
      completed,
      replicas,
      wall_s: Number(wallS.toFixed(1)),
      peak_rss_mib: Math.round(Math.max(...peaks)),
      store_tx_per_s: Math.round(tx / wallS),
      api_p99_ms: Number(pct(latencies, 0.99).toFixed(1)),
      api_p50_ms: Number(pct(latencies, 0.5).toFixed(1)),
      max_in_flight: seen.inFlight,
      max_cutovers: seen.cutovers,
    };
    console.log(
      `replicas=${replicas}: ${completed}/${databases} completed in ${result.wall_s} s; peak rss per replica ${peaks.map((p) => Math.round(p)).join(", ")} MiB (goal < ${GOAL_RSS_MIB}); store ${result.store_tx_per_s} transactions/s; API p50 ${result.api_p50_ms} ms, p99 ${result.api_p99_ms} ms over ${latencies.length} calls; at most ${seen.inFlight} in flight (limit ${IN_FLIGHT}) and ${seen.cutovers} cutovers (limit ${CUTOVERS}) at once, from the event log`,
    );
    return result;
  } finally {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((res) => {
            if (p.child.exitCode !== null) return res();
            p.child.once("exit", () => res());
            p.child.kill("SIGTERM");
            setTimeout(() => p.child.kill("SIGKILL"), 15_000).unref();
          }),
      ),
    );
    await LocalCluster.load(join(dir, "r0", "store"))
      ?.destroy()
      .catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--replica") {
  await replica(process.argv[3]!, Number(process.argv[4]), process.argv[5] || undefined);
} else {
  const databases = Number(process.argv[2] ?? 400);
  const counts = process.argv[3] ? [Number(process.argv[3])] : [1, 3];
  console.log(
    `fleet: ${databases} databases, ${IN_FLIGHT} in flight, ${CUTOVERS} cutovers at once, fake provider with real latencies, real store`,
  );
  let last;
  for (const n of counts) last = await run(databases, n);
  console.log(JSON.stringify(last));
  process.exit(0);
}
