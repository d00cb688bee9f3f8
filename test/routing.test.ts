import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource, type AppCredentials } from "../testing/sample.js";
import { XdsTcpProxy } from "../src/proxy/xds-tcp-proxy.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { healthClient, migrationClient, unary, unaryError, grpc, type AnyClient } from "./helpers/grpc-clients.js";
import { localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";
import { destroyClusters } from "./helpers/clusters.js";

async function serverPort(port: number, app: AppCredentials): Promise<{ port: number; recovery: boolean }> {
  const c = new pg.Client({ host: "127.0.0.1", port, ...app, connectionTimeoutMillis: 3000 });
  await c.connect();
  const r = await c.query("select inet_server_port() as port, pg_is_in_recovery() as rec");
  await c.end();
  return { port: r.rows[0].port, recovery: r.rows[0].rec };
}

async function until<T>(fn: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("condition not met in time");
}

describe("routing through xDS: the local proxy follows cutover, ROUTING waits for its ACK, NACKs are reported", () => {
  const tmp = tempDir("routing");
  const provider = new LocalProvider(join(tmp.dir, "local"));
  let svc: ServiceProcess;
  let client: AnyClient;
  let proxy: XdsTcpProxy;

  beforeAll(async () => {
    svc = await startServiceProcess(["--data-dir", tmp.dir]);
    client = migrationClient(svc.address);
    proxy = new XdsTcpProxy({ xds: `127.0.0.1:${svc.xdsPort}`, nodeId: "sidecar-1", listenPort: () => 0 });
    await proxy.start();
  });

  afterAll(async () => {
    await proxy?.stop();
    client?.close();
    if (svc) await svc.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  it("a client through the proxy reaches the source, then, after cutover, the target; every committed write is on the target", async () => {
    const { app } = await createSampleSource(provider, "billing", { rows: 1000 });
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("billing-db", "billing", "billing-aurora", { cutover_mode: "CUTOVER_MODE_MANUAL" }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    // The route to the source exists from PREFLIGHT on: the proxy listens for billing-db.
    const port = await proxy.waitForListener("billing-db");
    const srcPort = provider.cluster({ id: "billing" }).port;
    expect(await serverPort(port, app)).toEqual({ port: srcPort, recovery: false });

    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 100 });
    load.start();
    await waitForPhase(client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
    await unary(client, "ApproveCutover", { id: m.id });
    const { phase, events } = await waitForPhase(client, m.id, [
      "PHASE_COMPLETED",
      "PHASE_ROLLED_BACK",
      "PHASE_FAILED",
    ]);
    await new Promise((r) => setTimeout(r, 300));
    await load.stop();
    expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");

    const tgtPort = provider.cluster({ id: "billing-aurora" }).port;
    expect(await serverPort(port, app)).toEqual({ port: tgtPort, recovery: false });
    const status = (await unary(client, "GetRoutingStatus", { database_name: "billing-db" })).status;
    expect(status.endpoint).toEqual({ host: "127.0.0.1", port: tgtPort });
    expect(status.version).toBe("2");
    expect(status.listener_port).toBeGreaterThan(0);
    expect(status.proxies).toEqual([
      expect.objectContaining({ node_id: "sidecar-1", connected: true, acked_version: "2", nacked_version: "" }),
    ]);
    // ROUTING ended only after the proxy had the new route.
    const routed = events.find((e) => e.transition?.to === "PHASE_VERIFYING");
    expect(routed.transition.reason).toMatch(/routed to 127.0.0.1:\d+ \(version 2\)/);

    const ids = new Set(
      (
        await provider.cluster({ id: "billing-aurora" }).query<{ id: string }>("select id::text from items", [], "app")
      ).map((r) => r.id),
    );
    expect(load.committed.length).toBeGreaterThan(100);
    expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
    // Only connection errors, the kind a retry fixes, during the cutover.
    for (const f of load.failures)
      expect(f.code).toMatch(/^(connection|57P01|08006|08P01|28000|ECONNRESET|ECONNREFUSED|57P03)$/);
    console.log(
      `write-unavailability window through the proxy: ${Math.round(load.longestGapMs)} ms; ${load.failures.length} failed attempts; ${load.committed.length} commits`,
    );
  });

  it("rollback after writes landed on the target loses none of them: every committed id is on the source afterwards", async () => {
    const { app } = await createSampleSource(provider, "ledger", { rows: 500 });
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("ledger-db", "ledger", "ledger-aurora", { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    const port = await proxy.waitForListener("ledger-db");
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 100 });
    load.start();
    expect((await waitForPhase(client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED"])).phase).toBe("PHASE_COMPLETED");
    // Writes land on the target for a while.
    const tgt = provider.cluster({ id: "ledger-aurora" });
    const before = Number((await tgt.query<{ n: string }>("select count(*)::text as n from items", [], "app"))[0]!.n);
    await until(async () =>
      Number((await tgt.query<{ n: string }>("select count(*)::text as n from items", [], "app"))[0]!.n) > before + 100
        ? true
        : undefined,
    );
    await unary(client, "RollbackMigration", { id: m.id, reason: "test" });
    expect((await waitForPhase(client, m.id, ["PHASE_ROLLED_BACK", "PHASE_FAILED"])).phase).toBe("PHASE_ROLLED_BACK");
    // The application carries on through the proxy, now on the source, with ids that do not collide.
    const n = load.committed.length;
    await until(() => (load.committed.length > n + 50 ? true : undefined));
    await load.stop();
    const ids = new Set(
      (await provider.cluster({ id: "ledger" }).query<{ id: string }>("select id::text from items", [], "app")).map(
        (r) => r.id,
      ),
    );
    expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
    expect(new Set(load.committed.map(String)).size).toBe(load.committed.length);
    expect(await serverPort(port, app)).toEqual({ port: provider.cluster({ id: "ledger" }).port, recovery: false });
    // Nothing left retaining WAL: no reverse slot on the target, no replica slot on the source.
    expect((await provider.describe({ id: "ledger-aurora" })).slots).toEqual([]);
    expect((await provider.describe({ id: "ledger" })).slots).toEqual([]);
  });

  for (const policy of ["FAILURE_POLICY_ROLLBACK", "FAILURE_POLICY_HOLD"] as const) {
    const hold = policy === "FAILURE_POLICY_HOLD";
    it(`a proxy that NACKs the new endpoint fails ROUTING: ${hold ? "held for an operator, who rolls back" : "the migration rolls back"}; every committed write is on the source`, async () => {
      const name = hold ? "held" : "strict";
      const { app } = await createSampleSource(provider, name, { rows: 300 });
      const sourcePort = provider.cluster({ id: name }).port;
      // A second sidecar whose egress policy refuses this migration's target: it will NACK the switch.
      const targetPort = () =>
        provider.list().includes(`${name}-aurora`) ? provider.cluster({ id: `${name}-aurora` }).port : -1;
      const strict = new XdsTcpProxy({
        xds: `127.0.0.1:${svc.xdsPort}`,
        nodeId: `${name}-sidecar`,
        listenPort: () => 0,
        allowEndpoint: (_h, p) => p !== targetPort(),
      });
      await strict.start();
      try {
        const m = (
          await unary(client, "CreateMigration", {
            spec: localSpec(`${name}-db`, name, `${name}-aurora`, {
              cutover_mode: "CUTOVER_MODE_AUTOMATIC",
              failure_policy: policy,
            }),
          })
        ).migration;
        const port = await strict.waitForListener(`${name}-db`);
        await proxy.waitForListener(`${name}-db`);
        const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 100 });
        load.start();
        if (hold) {
          // Held in ROUTING, paused, until an operator decides; the hold is in the event log with its reason.
          const got = await until(async () => {
            const g = (await unary(client, "GetMigration", { id: m.id })).migration;
            return g.phase === "PHASE_ROUTING" && g.paused ? g : undefined;
          }, 60_000);
          expect(got.last_error.message).toMatch(/rejected route version 2/);
          await new Promise((r) => setTimeout(r, 1000));
          expect((await unary(client, "GetMigration", { id: m.id })).migration.phase).toBe("PHASE_ROUTING");
          await unary(client, "RollbackMigration", { id: m.id, reason: "the sidecar policy refuses the target" });
        }
        const { phase, events } = await waitForPhase(client, m.id, [
          "PHASE_COMPLETED",
          "PHASE_FAILED",
          "PHASE_ROLLED_BACK",
        ]);
        expect(phase, events.map((e) => e.message).join(" | ")).toBe("PHASE_ROLLED_BACK");
        const n = load.committed.length;
        await until(() => (load.committed.length > n + 20 ? true : undefined));
        await load.stop();
        const messages = events.map((e) => e.message).join(" | ");
        expect(messages).toMatch(
          new RegExp(
            `proxy ${name}-sidecar rejected route version 2 of ${name}-db: .*not allowed by this sidecar's egress policy`,
          ),
        );
        if (hold) expect(messages).toMatch(/holding in ROUTING for an operator \(failure policy HOLD\)/);
        expect(strict.stats.nacks).toBeGreaterThan(0);
        // Traffic is on the source, which holds every write.
        expect(await serverPort(port, app)).toEqual({ port: sourcePort, recovery: false });
        const ids = new Set(
          (await provider.cluster({ id: name }).query<{ id: string }>("select id::text from items", [], "app")).map(
            (r) => r.id,
          ),
        );
        expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
        const status = (await unary(client, "GetRoutingStatus", { database_name: `${name}-db` })).status;
        expect(status.endpoint.port).toBe(sourcePort);
        expect(status.proxies.find((p: any) => p.node_id === `${name}-sidecar`)).toMatchObject({
          connected: true,
          nacked_version: "2",
        });
      } finally {
        await strict.stop();
      }
    });
  }

  it("a resource gRPC's xDS client rejects shows up as a NACK in GetRoutingStatus", async () => {
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [
        { server_uri: `127.0.0.1:${svc.xdsPort}`, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] },
      ],
      node: { id: "grpc-nacker", cluster: "interop", locality: {} },
    });
    const xds = await import("@grpc/grpc-js-xds");
    xds.register();
    // billing-db's listener is a TCP proxy, not a gRPC api_listener: gRPC's client must refuse it.
    const h = healthClient("xds:///billing-db");
    const err = await new Promise<grpc.ServiceError>((res) =>
      h.Check({ service: "" }, { deadline: Date.now() + 5000 }, (e: grpc.ServiceError) => res(e)),
    );
    expect(err).toBeTruthy();
    const nacker = await until(async () => {
      const s = (await unary(client, "GetRoutingStatus", { database_name: "billing-db" })).status;
      return s.proxies.find((p: any) => p.node_id === "grpc-nacker" && p.nacked_version === "2");
    });
    expect(nacker.nack_message).toMatch(/api_listener|validation/i);
    h.close();
    expect((await unaryError(client, "GetRoutingStatus", { database_name: "no-such-db" })).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect((await unaryError(client, "GetRoutingStatus", { database_name: "" })).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
  });
});
