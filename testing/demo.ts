import { existsSync, rmSync, writeFileSync } from "node:fs";
import { newWorkDir } from "../src/postgres/reach.js";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import {
  CheckStatus,
  CutoverMode,
  EventType,
  MigrationService,
  Phase,
  Provider,
} from "../src/gen/migration/v1/migration_pb.js";
import { parseServiceConfig } from "../src/config.js";
import { startConsoleProxy } from "../src/cli/console-proxy.js";
import { LocalCluster } from "../src/postgres/cluster.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource, type AppCredentials } from "./sample.js";
import { XdsTcpProxy } from "../src/proxy/xds-tcp-proxy.js";
import { startService } from "../src/service/start.js";
import { createLogger } from "../src/telemetry/log.js";
import { WriteLoad } from "./workload/write-load.js";
import { createRealisticSource, RealisticLoad } from "./workload/realistic.js";
import { CdcConsumer } from "./cdc/consumer.js";
import { verifyStream } from "./cdc/stream-verdict.js";
import type { ClientTls } from "../src/security/client-tls.js";
import { clientTlsOf, makeDevPki, serveTlsArgs } from "../src/security/dev-pki.js";
import { transportFor } from "../src/cli/api-transport.js";
import type { RdsEmulator } from "./aws-emulator/rds-emulator.js";

const say = (s = "") => process.stdout.write(s + "\n");
const SPIFFE = "spiffe://pgshift.local/sa";
/** The emulator's "security group that allows nothing" (the demo uses the SQL fence, which keeps CDC consumers connected). */
const DENY_ALL = "sg-demo-deny-all";
/** The DB cluster parameter group the demo's Aurora cluster gets: rds.logical_replication = 1. */
const LOGICAL_GROUP = "pgshift-logical";

function demoPolicy(ids: { operator: string; sidecar: string; cdc: string }): string {
  return [
    "grants:",
    `  - { identities: ["${ids.operator}"], databases: ["billing-db"], role: admin }`,
    `  - { identities: ["${ids.cdc}"], databases: ["billing-db"], role: viewer }`,
    "proxies:",
    `  - { identities: ["${ids.sidecar}"], databases: ["billing-db"] }`,
    "",
  ].join("\n");
}
const phaseName = (p: Phase) => Phase[p] ?? String(p);

/**
 * The main job on the embedded default: a sample source with a live write
 * load through the local xDS proxy, a whole migration driven by the service,
 * shown phase by phase, then verified on the data.
 */
/** The demo's options, parsed. */
type DemoValues = ReturnType<typeof parseDemoArgs>;

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const DEMO_OPTIONS = {
  rollback: { type: "boolean", default: false },
  rows: { type: "string", default: "20000" },
  rate: { type: "string", default: "200" },
  window: { type: "string", default: "5" },
  "data-dir": { type: "string" },
  keep: { type: "boolean", default: false },
  console: { type: "boolean", default: false },
  "metrics-port": { type: "string" },
  "aws-emulator": { type: "boolean", default: false },
  schema: { type: "string", default: "sample" },
} as const;

function parseDemoArgs(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: DEMO_OPTIONS,
    strict: true,
  });
  if (values.schema !== "sample" && values.schema !== "realistic")
    throw new Error(`--schema ${values.schema}: use sample or realistic`);
  return values;
}

/** What the demo runs on: the service, a client of it, the application's sidecar, the clusters' provider (and the AWS endpoint). */
interface DemoRig {
  dataDir: string;
  provider: LocalProvider;
  emulator?: RdsEmulator;
  service: Awaited<ReturnType<typeof startService>>;
  client: ReturnType<typeof createClient<typeof MigrationService>>;
  proxy: XdsTcpProxy;
  awsEndpoint?: string;
  tlsOf(name: "operator" | "sidecar" | "cdc"): ClientTls;
}

/**
 * The main job on the embedded default: a source with a live write load
 * through the local xDS proxy, a whole migration driven by the service, shown
 * phase by phase, then verified on the data. `--schema realistic` migrates a
 * source shaped like production databases instead of the sample table.
 */
export async function demoCommand(argv: string[]): Promise<void> {
  const values = parseDemoArgs(argv);
  if (values.console) await buildConsole();
  const rig = await setUp(values);
  let ok: boolean;
  try {
    ok = values.schema === "realistic" ? await runRealistic(rig, values) : await runSample(rig, values);
    say();
    say(ok ? "demo: OK" : "demo: FAILED");
    if (values.console) await keepForTheConsole(rig);
  } finally {
    await rig.proxy.stop();
    await rig.service.stop();
    await rig.emulator?.close();
    if (!values.keep) {
      for (const name of rig.provider.list())
        await rig.provider
          .cluster({ id: name })
          .destroy()
          .catch(() => {});
      await LocalCluster.load(join(rig.dataDir, "store"))?.destroy();
      if (!values["data-dir"]) rmSync(rig.dataDir, { recursive: true, force: true });
    }
  }
  if (!ok) process.exitCode = 1;
}

/**
 * `--console`: the service stays up with what the demo made, and the web console is opened through `pgshift console`'s
 * loopback proxy as the demo's operator identity (the service itself requires mutual TLS). Ends on Ctrl-C.
 */
/** The console's pages, built (into dist/web, where the service looks) when a fresh checkout has none yet. */
async function buildConsole(): Promise<void> {
  const root = resolve(import.meta.dirname, "..");
  if (existsSync(join(root, "dist/web/index.html"))) return;
  say("building the web console (vite build)…");
  const { build } = await import("vite");
  await build({ configFile: join(root, "web/vite.config.ts") });
}

async function keepForTheConsole(rig: DemoRig): Promise<void> {
  const proxy = await startConsoleProxy(`https://127.0.0.1:${rig.service.port}`, rig.tlsOf("operator"), 0, "demo");
  say();
  say(`console: ${proxy.url}  (as the demo's operator; Ctrl-C stops the service and cleans up)`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  await proxy.close();
}

async function setUp(values: DemoValues): Promise<DemoRig> {
  const dataDir = values["data-dir"] ? resolve(values["data-dir"]) : newWorkDir("pgshift-demo-");
  // Mutual TLS as in production, with certificates made for this run: the operator (this demo), the sidecar and the
  // CDC consumer each have an identity, and the policy grants each what it needs on billing-db, nothing more.
  const ids = {
    operator: `${SPIFFE}/demo-operator`,
    sidecar: `${SPIFFE}/demo-sidecar`,
    cdc: `${SPIFFE}/billing-events`,
  };
  const pki = await makeDevPki(join(dataDir, "tls"), {
    // The sidecar checks the control plane as "localhost" (SNI may not carry an IP); other clients by address.
    serverNames: ["127.0.0.1", "localhost"],
    clients: Object.entries(ids).map(([name, identity]) => ({ name, identity })),
    days: 1,
  });
  const policyFile = join(dataDir, "tls", "policy.yaml");
  writeFileSync(policyFile, demoPolicy(ids));
  const tlsOf = (name: keyof typeof ids): ClientTls => clientTlsOf(pki, name);
  const provider = new LocalProvider(join(dataDir, "local"));
  // With --aws-emulator the migration runs on PROVIDER_AWS: the service's AWS provider, through @aws-sdk/client-rds,
  // against a local RDS endpoint whose "instances" are this machine's clusters.
  if (values["aws-emulator"]) {
    // The SDK signs every request with these; the local endpoint verifies each signature against them.
    process.env.AWS_ACCESS_KEY_ID ??= "AKIDPGSHIFTDEMO";
    process.env.AWS_SECRET_ACCESS_KEY ??= "pgshift-demo";
  }
  const credentials = {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? "",
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? "",
  };
  const emulator = values["aws-emulator"]
    ? new (await import("./aws-emulator/rds-emulator.js")).RdsEmulator(provider, {
        credentials,
        denyAllGroup: DENY_ALL,
        stepMs: 100,
      })
    : undefined;
  const awsEndpoint = await emulator?.listen();
  if (emulator) {
    // As on AWS, the engine's default cluster parameter group leaves logical decoding off: the Aurora cluster gets one that turns it on.
    emulator.addClusterParameterGroup(LOGICAL_GROUP, { "rds.logical_replication": "1" });
  }
  const config = {
    ...parseServiceConfig([
      ...serveTlsArgs(pki, policyFile),
      "--port",
      "0",
      "--xds-port",
      "0",
      "--data-dir",
      dataDir,
      "--lease-ms",
      "5000",
      ...(values["metrics-port"] ? ["--metrics-port", values["metrics-port"]] : []),
      // The emulated instances speak plaintext (the tests run them with certificates, verified).
      ...(awsEndpoint
        ? [
            "--aws-region",
            "eu-west-1",
            "--aws-endpoint",
            awsEndpoint,
            "--aws-cluster-parameter-group",
            LOGICAL_GROUP,
            "--aws-db-ssl",
            "disable",
          ]
        : []),
    ]),
    logLevel: "warn" as const,
  };
  say(`pgshift demo — data under ${dataDir}`);
  say("1. starting the service (its own PostgreSQL state store, gRPC API, xDS server)");
  const service = await startService(config, createLogger("warn"));
  say(
    `   API on 127.0.0.1:${service.port}, xDS on 127.0.0.1:${service.xdsPort}, both mutual TLS (certificates and policy under ${join(dataDir, "tls")})`,
  );
  if (config.metricsPort)
    say(`   metrics: curl -s http://${config.metricsHost}:${config.metricsPort}/metrics | grep ^pgshift_`);
  const client = createClient(MigrationService, transportFor(`https://127.0.0.1:${service.port}`, tlsOf("operator")));
  const proxy = new XdsTcpProxy({
    xds: `127.0.0.1:${service.xdsPort}`,
    nodeId: `${ids.sidecar}#sidecar-1`,
    listenPort: () => 0,
    tls: tlsOf("sidecar"),
    serverName: "localhost",
  });
  return { dataDir, provider, emulator, service, client, proxy, tlsOf, awsEndpoint };
}

/** The sample source with a CDC consumer: every committed row on the side that holds the truth, streamed once, in order. */
async function runSample(rig: DemoRig, values: DemoValues): Promise<boolean> {
  const { provider, emulator, service, client, proxy, tlsOf, awsEndpoint } = rig;
  let ok = true;
  let load: WriteLoad | undefined;
  let consumer: CdcConsumer | undefined;
  try {
    say(
      `2. creating the source "billing" (RDS stand-in) with ${values.rows} rows, a publication and a pgoutput slot for CDC`,
    );
    const { app, cdc } = await createSampleSource(provider, "billing", { rows: Number(values.rows), cdc: true });
    if (emulator) {
      await emulator.addInstance("billing", { database: "billing-db" });
      say(
        `   PROVIDER_AWS: "billing" is an RDS for PostgreSQL instance behind a local RDS endpoint (${awsEndpoint}); the service reaches it through @aws-sdk/client-rds`,
      );
    }
    await registerBilling(rig, values);
    const firstId = (
      await provider
        .cluster({ id: "billing" })
        .query<{ m: string }>("select coalesce(max(id), 0)::text as m from items", [], "app")
    )[0]!.m;
    await proxy.start();
    say(`   a CDC consumer (pgoutput) reads slot ${cdc!.slot} and follows the service's directives (CdcService)`);
    consumer = new CdcConsumer({
      api: `https://127.0.0.1:${service.port}`,
      tls: tlsOf("cdc"),
      databaseName: "billing-db",
      slot: cdc!.slot,
      publication: cdc!.publication,
      user: cdc!.user,
      password: cdc!.password,
      database: cdc!.database,
    });
    consumer.start();

    say("3. CreateMigration billing-db: billing -> billing-aurora (automatic cutover)");
    const { migration } = await client.createMigration({
      requestId: `demo-${Date.now()}`,
      spec: demoSpec(rig, values),
    });
    const id = migration!.id;
    const listenerPort = await proxy.waitForListener("billing-db");
    say(
      `4. the application writes ${values.rate} rows/s through the local proxy (127.0.0.1:${listenerPort}), never changing its connection string`,
    );
    load = new WriteLoad({ host: "127.0.0.1", port: listenerPort, ...app, ratePerSec: Number(values.rate) });
    load.start();

    const { entered } = await watchToEnd(client, id, values.rollback);
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();
    const final = await reportChecksAndPhases(client, id, entered);
    say(
      `   write-unavailability window (longest gap between commits seen by the application): ${Math.round(load.longestGapMs)} ms`,
    );
    say(
      `   application: ${load.committed.length} commits, ${load.failures.length} failed attempts (${[...new Set(load.failures.map((f) => f.code))].join(", ") || "none"}), all retried`,
    );

    const wantPhase = values.rollback ? Phase.ROLLED_BACK : Phase.COMPLETED;
    if (final.phase !== wantPhase) ok = false;
    if (!(await verifyRows(rig, load, listenerPort, app, values.rollback, entered))) ok = false;
    if (!(await verifyCdc(rig, consumer, values.rollback, firstId))) ok = false;
    if (emulator)
      say(
        `   AWS calls made (through the SDK, against the local RDS endpoint): ${[...new Set(emulator.calls)].join(", ")}`,
      );
  } finally {
    await consumer?.stop();
    await load?.stop();
  }
  return ok;
}

/** Every id the application saw committed is on the side that holds the truth now; after a rollback, the proxy leads to the source. */
async function verifyRows(
  rig: DemoRig,
  load: WriteLoad,
  listenerPort: number,
  app: AppCredentials,
  rollback: boolean,
  entered: Map<string, Date>,
): Promise<boolean> {
  const { provider } = rig;
  let ok = true;
  const cluster = provider.cluster({ id: rollback ? "billing" : "billing-aurora" });
  const ids = new Set((await cluster.query<{ id: string }>("select id::text from items", [], "app")).map((r) => r.id));
  const missing = load.committed.filter((c) => !ids.has(c.toString()));
  if (rollback) {
    const promotedAt = entered.get("CDC_RESTORE");
    const onTarget = new Set(
      // Kept fenced after the rollback: read as pgshift reads it, through the fence's own role.
      (await provider.query<{ id: string }>({ id: "billing-aurora" }, "select id::text from items", [], "app")).map(
        (r) => r.id,
      ),
    );
    const writtenOnTarget = load.committed.filter((c) => onTarget.has(c.toString())).length;
    say(
      `   rows verified on the source after rollback: ${load.committed.length - missing.length} of ${load.committed.length} committed ids present, ${missing.length} missing`,
    );
    say(
      `   (writes made on the target after promotion${promotedAt ? ` at ${promotedAt.toISOString().slice(11, 23)}` : ""} came back through reverse replication; ${writtenOnTarget} committed ids are on the target too)`,
    );
    if (missing.length > 0) ok = false;
    const c = new pg.Client({ host: "127.0.0.1", port: listenerPort, ...app });
    await c.connect();
    const r = await c.query("select inet_server_port() as port");
    await c.end();
    say(
      `   a new connection through the proxy now reaches port ${r.rows[0].port} (the source is ${provider.cluster({ id: "billing" }).port})`,
    );
    if (r.rows[0].port !== provider.cluster({ id: "billing" }).port) ok = false;
  } else {
    say(
      `   rows verified on the target: ${load.committed.length - missing.length} of ${load.committed.length} committed ids present, ${missing.length} missing`,
    );
    if (missing.length > 0) ok = false;
  }
  return ok;
}

/** The CDC stream, held to the table that holds the truth now: every committed row once, in commit order. */
async function verifyCdc(rig: DemoRig, consumer: CdcConsumer, rollback: boolean, firstId: string): Promise<boolean> {
  const { provider } = rig;
  const cluster = provider.cluster({ id: rollback ? "billing" : "billing-aurora" });
  let ok = true;
  // The stream is held to the table that holds the truth now, in commit order (one writer: id order).
  const truth = (
    await cluster.query<{ id: string }>(
      "select id::text from items where items.id > $1 order by items.id",
      [firstId],
      "app",
    )
  ).map((r) => r.id);
  const newest = truth[truth.length - 1];
  for (let i = 0; i < 200 && newest && !consumer.changes.some((c) => String(c.row.id) === newest); i++)
    await new Promise((r) => setTimeout(r, 100));
  const ports = new Map(["billing", "billing-aurora"].map((n) => [`127.0.0.1:${provider.cluster({ id: n }).port}`, n]));
  const named = (hp: string) => `${ports.get(hp) ?? "?"} (${hp})`;
  const v = verifyStream(consumer.changes, "items", truth);
  say(
    `   CDC events verified: ${v.streamed} inserts streamed for ${truth.length} committed rows — ${v.lost} lost, ${v.duplicated} duplicated, ${v.inOrder ? "in commit order" : "OUT OF ORDER"}; read from ${v.from.map(named).join(", then ")}`,
  );
  if (v.lost > 0 || v.duplicated > 0 || !v.inOrder || truth.length === 0) ok = false;
  return ok;
}

/** The inventory entry every migration stands on: billing-db, served by the source "billing", owned by team billing. */
async function registerBilling(rig: DemoRig, values: DemoValues): Promise<void> {
  const spec = demoSpec(rig, values);
  await rig.client.registerDatabase({
    database: {
      name: spec.databaseName,
      provider: spec.provider,
      instances: [spec.source],
      team: "billing",
      labels: { tier: "demo" },
    },
  });
  say(
    `   RegisterDatabase ${spec.databaseName}: served by "${spec.source.id}", team billing; a migration of "${spec.source.id}" must name it`,
  );
}

/** The demo's migration: billing -> billing-aurora, automatic cutover, on the provider the rig runs. */
function demoSpec(rig: DemoRig, values: DemoValues) {
  return {
    databaseName: "billing-db",
    provider: rig.emulator ? Provider.AWS : Provider.LOCAL,
    source: { id: "billing" },
    target: { id: "billing-aurora" },
    cutoverMode: CutoverMode.AUTOMATIC,
    lagPolicy: {
      maxLagBytes: 16n * 1024n * 1024n,
      maxLagTime: { seconds: 2n },
      window: { seconds: BigInt(values.window) },
    },
  };
}

/** Prints the migration's events as they come, asks for the rollback with --rollback once COMPLETED, and returns when it ends. */
async function watchToEnd(
  client: DemoRig["client"],
  id: string,
  rollback: boolean,
): Promise<{ entered: Map<string, Date> }> {
  say("5. watching the migration:");
  const entered = new Map<string, Date>();
  let rolledBackRequested = false;
  for await (const res of client.watchMigration({ id })) {
    const e = res.event!;
    const at = e.at ? timestampDate(e.at) : new Date();
    if (e.type === EventType.PHASE_CHANGED && e.transition) {
      entered.set(phaseName(e.transition.to), at);
      say(
        `   ${at.toISOString().slice(11, 23)}  ${phaseName(e.transition.from).padEnd(17)} -> ${phaseName(e.transition.to).padEnd(17)} ${e.message}`,
      );
    } else if (e.type === EventType.CHECK_RESULT && e.check) {
      say(
        `   ${at.toISOString().slice(11, 23)}    check ${e.check.name}: ${CheckStatus[e.check.status]} — ${e.check.measured}`,
      );
    } else if (e.type === EventType.STEP_FAILED || e.type === EventType.OPERATOR_ACTION || e.type === EventType.CDC) {
      say(`   ${at.toISOString().slice(11, 23)}    ${EventType[e.type]}: ${e.message}`);
    }
    if (res.phase === Phase.COMPLETED && rollback && !rolledBackRequested) {
      rolledBackRequested = true;
      await new Promise((r) => setTimeout(r, 1000));
      say("   RollbackMigration requested");
      await client.rollbackMigration({ id, reason: "demo --rollback" });
      continue;
    }
    if (res.phase === Phase.COMPLETED && !rollback) break;
    if ([Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED, Phase.FINALIZED].includes(res.phase)) break;
  }
  return { entered };
}

/** Steps 6 and 7's start: every verdict, the phase durations, where the database is routed; returns the migration. */
async function reportChecksAndPhases(client: DemoRig["client"], id: string, entered: Map<string, Date>) {
  const final = (await client.getMigration({ id })).migration!;
  say();
  say("6. checks");
  for (const c of final.checks) say(`   ${CheckStatus[c.status].padEnd(4)} ${c.name}: ${c.measured}`);
  say();
  say("7. summary");
  const order = [...entered.entries()].sort((a, b) => a[1].getTime() - b[1].getTime());
  for (let i = 0; i < order.length - 1; i++) {
    say(`   ${order[i]![0].padEnd(18)} ${String(order[i + 1]![1].getTime() - order[i]![1].getTime()).padStart(7)} ms`);
  }
  const routing = (await client.getRoutingStatus({ databaseName: "billing-db" })).status!;
  say(
    `   final phase: ${phaseName(final.phase)}; billing-db routed to ${routing.endpoint?.host}:${routing.endpoint?.port} (version ${routing.version}), proxies: ${routing.proxies.map((p) => `${p.nodeId} acked ${p.ackedVersion}`).join(", ")}`,
  );
  return final;
}

/**
 * The realistic source (two databases; keyless, unlogged, partitioned tables; large objects; odd sequences; a
 * materialized view) under a load touching every table: preflight refuses the unlogged table until the spec accepts
 * it; no statement is refused at any phase; verify.data compares every table after each switch.
 */
async function runRealistic(rig: DemoRig, values: DemoValues): Promise<boolean> {
  const { provider, emulator, client, proxy } = rig;
  const rate = Math.min(Number(values.rate), 50);
  say(
    `2. creating the source "billing" (RDS stand-in) with a realistic schema: databases app and ledger, ${values.rows} orders`,
  );
  const src = await createRealisticSource(provider, "billing", { rows: Number(values.rows) });
  if (emulator) await emulator.addInstance("billing", { database: "billing-db" });
  await proxy.start();
  await registerBilling(rig, values);
  const spec = demoSpec(rig, values);
  const pre = await client.runPreflight({ spec });
  for (const c of pre.checks.filter((c) => c.status !== CheckStatus.PASS))
    say(`   preflight ${CheckStatus[c.status]} ${c.name}: ${c.measured}${c.remedy ? ` — ${c.remedy}` : ""}`);
  say(`   preflight ${pre.passed ? "passed" : "refused"} without schema choices`);
  const choices = {
    disposableUnloggedTables: src.schemaPolicy.disposable_unlogged_tables,
    replicaIdentityFullTables: src.schemaPolicy.replica_identity_full_tables,
  };
  say(
    `3. CreateMigration billing-db: billing -> billing-aurora (automatic cutover), accepting ${choices.disposableUnloggedTables.join(", ")} as disposable and carrying ${choices.replicaIdentityFullTables.join(", ")} whole (REPLICA IDENTITY FULL)`,
  );
  const { migration } = await client.createMigration({
    requestId: `demo-${Date.now()}`,
    spec: { ...spec, schemaPolicy: choices },
  });
  const id = migration!.id;
  const port = await proxy.waitForListener("billing-db");
  say(
    `4. the application runs ${rate} transactions/s through the local proxy (127.0.0.1:${port}), each touching every table of both databases`,
  );
  const load = new RealisticLoad({ host: "127.0.0.1", port, ...src.app, ratePerSec: rate });
  load.start();
  try {
    const { entered } = await watchToEnd(client, id, values.rollback);
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();
    const final = await reportChecksAndPhases(client, id, entered);
    say(
      `   write-unavailability window (longest gap between committed transactions): ${Math.round(load.longestGapMs)} ms`,
    );
    say(
      `   application: ${load.committed.length} transactions committed, ${load.failures.length} failed on a lost connection and were retried, ${load.refused.length} statements refused${load.refused.length ? `: ${load.refused.map((f) => `${f.code} ${f.message}`).join("; ")}` : ""}`,
    );
    const onSide = provider.cluster({ id: values.rollback ? "billing" : "billing-aurora" });
    const ids = new Set(
      (await onSide.query<{ id: string }>("select id::text from sales.orders", [], "app")).map((r) => r.id),
    );
    const missing = load.committed.filter((c) => !ids.has(c.toString()));
    say(
      `   orders verified on ${values.rollback ? "the source after rollback" : "the target"}: ${load.committed.length - missing.length} of ${load.committed.length} committed present`,
    );
    const verified = final.checks.find((c) => c.name === "verify.data");
    say(
      `   every table compared by checksum: ${verified ? `${CheckStatus[verified.status]} — ${verified.measured}` : "not compared"}`,
    );
    return (
      final.phase === (values.rollback ? Phase.ROLLED_BACK : Phase.COMPLETED) &&
      missing.length === 0 &&
      load.refused.length === 0 &&
      verified?.status === CheckStatus.PASS
    );
  } finally {
    await load.stop();
  }
}
