import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { grpc, healthClient, migrationClient, unary, unaryError, type AnyClient } from "./helpers/grpc-clients.js";
import { LocalCluster } from "../src/postgres/cluster.js";
import { getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";
import { destroyClusters } from "./helpers/clusters.js";

const rowsOf = async (provider: LocalProvider, id: string) =>
  Number(
    (await provider.cluster({ id }).query<{ n: string }>("select count(*)::text as n from items", [], "app"))[0]!.n,
  );

/** pgshift never deletes, stops or changes what it did not create or what a migration does not name. */
describe("never destroy what pgshift did not create", () => {
  const tmp = tempDir("safety");
  const provider = new LocalProvider(join(tmp.dir, "local"));
  let svc: ServiceProcess;
  let client: AnyClient;

  beforeAll(async () => {
    svc = await startServiceProcess(["--data-dir", tmp.dir, "--lease-ms", "3000"]);
    client = migrationClient(svc.address);
  });

  afterAll(async () => {
    client?.close();
    if (svc) await svc.stop();
    await destroyClusters(provider);
    tmp.remove();
  });

  it("refuses a target that exists (a migration from a missing source onto a live cluster), and the cluster keeps running with its data", async () => {
    await createSampleSource(provider, "victim", { rows: 300 });
    const err = await unaryError(client, "CreateMigration", { spec: localSpec("victim-db", "no-such", "victim") });
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/spec\.target\.id "victim" names an instance that exists already/);
    await new Promise((r) => setTimeout(r, 1500));
    expect(provider.list()).toContain("victim");
    expect(await provider.cluster({ id: "victim" }).isRunning()).toBe(true);
    expect(await rowsOf(provider, "victim")).toBe(300);
    expect((await unary(client, "ListMigrations", { database_name: "victim-db" })).migrations).toHaveLength(0);
  });

  it("an abort after failed preflight attempts deletes nothing it did not create, even a cluster that appeared under the target's name", async () => {
    const { cluster: down } = await createSampleSource(provider, "down-src", { rows: 10 });
    await down.stop("fast");
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("late-db", "down-src", "late-tgt", {
          step_policy: { max_attempts: 50, initial_backoff: { seconds: 1 }, max_backoff: { seconds: 2 } },
        }),
      })
    ).migration;
    // Preflight keeps failing (the source is down); meanwhile somebody creates a database named like the target.
    await waitForEvent(client, m.id, (e) => e.type === "EVENT_TYPE_STEP_FAILED");
    await createSampleSource(provider, "late-tgt", { rows: 42 });
    await unary(client, "AbortMigration", { id: m.id, reason: "source is down" });
    const { phase } = await waitForPhase(client, m.id, ["PHASE_ABORTED", "PHASE_FAILED"], 30_000);
    expect(phase).toBe("PHASE_ABORTED");
    const got = await getMigration(client, m.id);
    expect(got.history.at(-1).reason).toMatch(/late-tgt left alone \(this migration did not create it\)/);
    expect(await provider.cluster({ id: "late-tgt" }).isRunning()).toBe(true);
    expect(await rowsOf(provider, "late-tgt")).toBe(42);
  });

  it("a cleanup that fails is recorded and retried, never swallowed: FAILED only once what the migration made is gone", async () => {
    const { cluster: src } = await createSampleSource(provider, "cleanup-src", { rows: 50 });
    const m = (
      await unary(client, "CreateMigration", {
        spec: localSpec("cleanup-db", "cleanup-src", "cleanup-tgt", { lag_policy: { window: { seconds: 3600 } } }),
      })
    ).migration;
    await waitForPhase(client, m.id, ["PHASE_REPLICATING"]);
    // The lag gate samples (its window of an hour keeps it there).
    await new Promise((r) => setTimeout(r, 2000));
    // The replica dies (the step fails for good) and the source is down, so its slot for the replica cannot be dropped yet.
    provider.cluster({ id: "cleanup-tgt" }).crash();
    await src.stop("fast");
    const failedCleanup = await waitForEvent(
      client,
      m.id,
      (e) => e.type === "EVENT_TYPE_CHECK_RESULT" && e.check?.name === "cleanup.target",
    );
    expect(failedCleanup.check.status).toBe("CHECK_STATUS_FAIL");
    expect(failedCleanup.check.measured).toMatch(/cannot connect to cleanup-src/);
    await new Promise((r) => setTimeout(r, 1500));
    const held = await getMigration(client, m.id);
    expect(held.phase).toBe("PHASE_REPLICATING");
    expect(held.last_error.message).toMatch(/cannot connect to cleanup-src/);
    // Back up: the retry removes the slot and the target, then the migration is FAILED, saying both.
    await src.start();
    const { phase } = await waitForPhase(client, m.id, ["PHASE_FAILED"], 60_000);
    expect(phase).toBe("PHASE_FAILED");
    const got = await getMigration(client, m.id);
    expect(got.history.at(-1).reason).toMatch(/REPLICATING failed: .*; cleanup-tgt removed/);
    expect(got.checks.find((c: any) => c.name === "cleanup.target").status).toBe("CHECK_STATUS_PASS");
    expect((await provider.describe({ id: "cleanup-src" })).slots.map((s) => s.name)).toEqual([]);
    expect(existsSync(join(tmp.dir, "local", "clusters", "cleanup-tgt"))).toBe(false);
  });

  it("the local provider refuses to adopt or delete a cluster folder it did not mark as the migration's own", async () => {
    await createSampleSource(provider, "keep-src", { rows: 5 });
    await createSampleSource(provider, "not-mine", { rows: 7 });
    const err = await provider.createReplica({ id: "keep-src" }, { id: "not-mine" }, "m-1").catch((e: Error) => e);
    expect((err as Error).message).toMatch(
      /not-mine exists and was not created by migration m-1 \(pgshift did not create it\)/,
    );
    expect(await provider.deleteReplica({ id: "keep-src" }, { id: "not-mine" }, "m-1")).toBe("not-ours");
    expect(await rowsOf(provider, "not-mine")).toBe(7);
    // Its own target is resumed by the migration that made it, and refused to another.
    await provider.createReplica({ id: "keep-src" }, { id: "mine" }, "m-2");
    expect(provider.ownerOf("mine")).toBe("m-2");
    await provider.createReplica({ id: "keep-src" }, { id: "mine" }, "m-2");
    expect(
      ((await provider.createReplica({ id: "keep-src" }, { id: "mine" }, "m-3").catch((e: Error) => e)) as Error)
        .message,
    ).toMatch(/migration m-2 created it/);
    expect(await provider.deleteReplica({ id: "keep-src" }, { id: "mine" }, "m-3")).toBe("not-ours");
    expect(await provider.deleteReplica({ id: "keep-src" }, { id: "mine" }, "m-2")).toBe("deleted");
    expect(existsSync(join(tmp.dir, "local", "clusters", "mine"))).toBe(false);
  });
});

describe("the store's notification channel", () => {
  const tmp = tempDir("notify");
  const replicas: ServiceProcess[] = [];

  afterAll(async () => {
    for (const r of replicas) await r.stop();
    await LocalCluster.load(join(tmp.dir, "store"))
      ?.destroy()
      .catch(() => {});
    tmp.remove();
  });

  it("a malformed NOTIFY from any role that reaches the store leaves every replica up", async () => {
    replicas.push(await startServiceProcess(["--data-dir", tmp.dir]));
    const store = LocalCluster.load(join(tmp.dir, "store"))!;
    replicas.push(
      await startServiceProcess(["--data-dir", join(tmp.dir, "second"), "--database-url", store.url("pgshift")]),
    );
    const clients = replicas.map((r) => migrationClient(r.address));
    const m = (
      await unary(clients[0]!, "CreateMigration", { spec: localSpec("notify-db", "nothing-here", "nothing-there") })
    ).migration;
    // An EventEmitter throws on an "error" event nobody listens to: the payload that used to crash every replica.
    for (const payload of [
      "error 1",
      "error",
      "",
      "x".repeat(7000),
      `${m.id} not-a-number`,
      "resync 1",
      "all 1",
      "m:x 1",
    ]) {
      await store.query("select pg_notify('pgshift_events', $1)", [payload], "pgshift");
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const [i, r] of replicas.entries()) {
      expect(r.alive(), `replica ${i}: ${r.stderr()}`).toBe(true);
      const got = await getMigration(clients[i]!, m.id);
      expect(got.id).toBe(m.id);
      const health = healthClient(r.address);
      expect((await unary(health, "Check", { service: "" })).status).toBe("SERVING");
      health.close();
    }
    for (const c of clients) c.close();
  });
});

/** Resolves with the first event of the migration that matches. */
function waitForEvent(client: AnyClient, id: string, match: (e: any) => boolean, timeoutMs = 30_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const stream = client.WatchMigration({ id, after_sequence: 0 });
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`no matching event for ${id} within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("data", (d: any) => {
      if (match(d.event)) {
        clearTimeout(timer);
        stream.cancel();
        resolve(d.event);
      }
    });
    stream.on("error", (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
}
