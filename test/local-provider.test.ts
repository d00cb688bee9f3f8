import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lsnAtLeast } from "../src/domain/lsn.js";
import { LocalProvider, replicaSlotName } from "../src/providers/local/local-provider.js";
import { createSampleSource, type AppCredentials } from "../testing/sample.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { tempDir } from "./helpers/service-process.js";
import { adminOf } from "./helpers/clusters.js";

async function appQuery(port: number, app: AppCredentials, sql: string): Promise<any[]> {
  const c = new pg.Client({
    host: "127.0.0.1",
    port,
    user: app.user,
    password: app.password,
    database: app.database,
    connectionTimeoutMillis: 3000,
  });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

const CHECKSUM =
  "select count(*)::text as n, coalesce(sum(hashtext(id::text || payload)::bigint), 0)::text as sum, max(id)::text as max from items";

describe("local provider on real PostgreSQL clusters", () => {
  const tmp = tempDir("local");
  const provider = new LocalProvider(tmp.dir);
  const src = { id: "billing" };
  const tgt = { id: "billing-aurora" };
  let app: AppCredentials;
  let load: WriteLoad;

  beforeAll(async () => {
    ({ app } = await createSampleSource(provider, src.id, { rows: 5000 }));
    const ep = await provider.endpoint(src);
    load = new WriteLoad({ ...ep, ...app, ratePerSec: 300 });
    load.start();
  });

  afterAll(async () => {
    await load?.stop();
    // Registered ones first: they only point at clusters of ours.
    for (const name of provider
      .list()
      .sort((a, b) => Number(b.includes("registered")) - Number(a.includes("registered")))) {
      await provider.cluster({ id: name }).destroy();
    }
    tmp.remove();
  });

  it("creates the target from a base backup, and it converges on the source while writes go on", async () => {
    await provider.createReplica(src, tgt, "m-local");
    // Called again (a retried step), it does nothing new: one slot, same replica.
    const port = provider.cluster(tgt).port;
    await provider.createReplica(src, tgt, "m-local");
    expect(provider.cluster(tgt).port).toBe(port);
    const desc = await provider.describe(src);
    expect(desc.slots.filter((s) => s.name === replicaSlotName(tgt.id))).toHaveLength(1);
    expect(desc.major).toBe(provider.cluster(src).major);
    expect(desc.extensions.some((e) => e.name === "plpgsql" && e.database === "app")).toBe(true);
    expect(desc.settings.wal_level).toBe("logical");

    const committedBefore = load.committed.length;
    const lsn = await provider.currentLsn(src);
    await provider.waitForReplay(tgt, lsn, 30_000);
    const status = await provider.replicationStatus(src, tgt);
    expect(status.state).toBe("streaming");
    expect(status.targetRunning).toBe(true);
    expect(lsnAtLeast(status.replayLsn!, lsn)).toBe(true);
    expect(status.lagBytes).not.toBeNull();
    // The load really ran while the replica converged.
    await new Promise((r) => setTimeout(r, 500));
    expect(load.committed.length).toBeGreaterThan(committedBefore);
    const rate = await provider.walGenerationRate(src, 500);
    expect(rate).toBeGreaterThan(0);
    // The replica is read-only while it replays.
    const err = await appQuery(
      (await provider.endpoint(tgt)).port,
      app,
      "insert into items (payload) values ('x')",
    ).catch((e) => e);
    expect(err.code).toBe("25006");
  });

  it("fences the source: new client connections refused, sessions ended, replication and admin access kept; unfence restores", async () => {
    const ep = await provider.endpoint(src);
    const hbaBefore = provider.cluster(src).readDataFile("pg_hba.conf");
    const session = new pg.Client({ ...ep, user: app.user, password: app.password, database: app.database });
    session.on("error", () => {});
    await session.connect();
    await provider.fence(src);
    await provider.fence(src);
    expect(await provider.isFenced(src)).toBe(true);
    const refused = await appQuery(ep.port, app, "select 1").catch((e) => e);
    expect(refused.code).toBe("28000");
    expect(String(refused.message)).toMatch(/pg_hba.conf rejects connection/);
    await expect(session.query("select 1")).rejects.toThrow();
    await session.end().catch(() => {});
    // Admin access and replication carry on.
    expect((await provider.describe(src)).currentLsn).toBeTruthy();
    expect((await provider.replicationStatus(src, tgt)).state).toBe("streaming");
    await provider.unfence(src);
    await provider.unfence(src);
    expect(await provider.isFenced(src)).toBe(false);
    expect(provider.cluster(src).readDataFile("pg_hba.conf")).toBe(hbaBefore);
    expect((await appQuery(ep.port, app, "select 1 as one"))[0].one).toBe(1);
  });

  it("after fence, final LSN and promotion, the target is writable and holds every row committed before the fence", async () => {
    // Let the load reconnect after the previous test's fence, and write some more.
    const n = load.committed.length;
    for (let i = 0; i < 100 && load.committed.length < n + 50; i++) await new Promise((r) => setTimeout(r, 50));
    expect(load.committed.length).toBeGreaterThanOrEqual(n + 50);

    await provider.fence(src);
    const finalLsn = await provider.currentLsn(src);
    await load.stop();
    await provider.waitForReplay(tgt, finalLsn, 30_000);
    await provider.promote(src, tgt);
    await provider.promote(src, tgt);
    await provider.detachReplica(src, tgt);

    const srcSum = await adminOf(provider, src.id).query(CHECKSUM, [], "app");
    const tgtSum = await provider.cluster(tgt).query(CHECKSUM, [], "app");
    expect(tgtSum[0]).toEqual(srcSum[0]);
    const ids = new Set(
      (await provider.cluster(tgt).query<{ id: string }>("select id::text from items", [], "app")).map((r) => r.id),
    );
    const missing = load.committed.filter((id) => !ids.has(id.toString()));
    expect(load.committed.length).toBeGreaterThan(100);
    expect(missing).toEqual([]);

    const tgtPort = (await provider.endpoint(tgt)).port;
    const inserted = await appQuery(
      tgtPort,
      app,
      "insert into items (payload) values ('after promotion') returning id",
    );
    expect(BigInt(inserted[0].id)).toBeGreaterThan(BigInt(srcSum[0]!.max));
    // The source no longer keeps WAL for the promoted replica.
    expect((await provider.describe(src)).slots.map((s) => s.name)).not.toContain(replicaSlotName(tgt.id));
    await provider.unfence(src);
  });

  it("detects and reports a replica that was killed", async () => {
    const other = { id: "billing-crashy" };
    await provider.createReplica(src, other, "m-other");
    expect((await provider.replicationStatus(src, other)).state).not.toBe("stopped");
    provider.cluster(other).crash();
    await new Promise((r) => setTimeout(r, 300));
    const status = await provider.replicationStatus(src, other);
    expect(status.targetRunning).toBe(false);
    expect(status.state).toBe("stopped");
    const err = await provider.waitForReplay(other, await provider.currentLsn(src), 5_000).catch((e) => e);
    expect(err.kind).toBe("ReplicaDownError");
    expect(err.rawMessage).toMatch(/billing-crashy is not running/);
    await provider.deleteReplica(src, other, "m-other");
    expect((await provider.describe(src)).slots.map((s) => s.name)).not.toContain(replicaSlotName(other.id));
  });

  it("answers bad input and faults with typed errors that say what to do", async () => {
    // The previous test left the source fenced: its admin is refused there now, as anyone is.
    await provider.unfence(src);
    const unknown = await provider.describe({ id: "nope" }).catch((e) => e);
    expect(unknown.kind).toBe("UnknownInstanceError");
    const c = provider.cluster(src);
    const wrong = await provider
      .register("wrong-pw", { dataDir: c.dataDir, port: c.port, user: c.user, password: "not-it" })
      .catch((e) => e);
    expect(wrong.kind).toBe("CredentialsRejectedError");
    expect(wrong.rawMessage).toMatch(/rejected the credentials/);
    const wrongDir = await provider
      .register("wrong-dir", {
        dataDir: provider.cluster(tgt).dataDir,
        port: c.port,
        user: c.user,
        password: c.password,
      })
      .catch((e) => e);
    expect(wrongDir.rawMessage).toMatch(/runs on .* not on/);
    // Registering the real thing works, and the registered cluster can be described under its new name.
    await provider.register("billing-registered", {
      dataDir: c.dataDir,
      port: c.port,
      user: c.user,
      password: c.password,
    });
    expect((await provider.describe({ id: "billing-registered" })).currentLsn).toBeTruthy();

    // A data directory that holds something that is not ours is refused, and left alone.
    const { mkdirSync, writeFileSync, readFileSync } = await import("node:fs");
    mkdirSync(join(tmp.dir, "clusters", "occupied", "data"), { recursive: true });
    writeFileSync(join(tmp.dir, "clusters", "occupied", "data", "precious.txt"), "keep me");
    const occupied = await provider.createCluster("occupied").catch((e) => e);
    expect(occupied.kind).toBe("FailedPreconditionError");
    expect(occupied.rawMessage).toMatch(/is not empty and holds no cluster of ours/);
    expect(readFileSync(join(tmp.dir, "clusters", "occupied", "data", "precious.txt"), "utf8")).toBe("keep me");

    await c.stop();
    const down = await provider.describe(src).catch((e) => e);
    expect(down.kind).toBe("InstanceUnreachableError");
    expect(down.rawMessage).toMatch(/check that it is running/);
    await c.start();
  });
});
