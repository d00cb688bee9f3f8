import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Leases } from "../src/store/leases.js";
import { MigrationRepo } from "../src/store/migration-repo.js";
import { openStore, type Store } from "../src/store/store.js";
import { tempDir } from "./helpers/service-process.js";

describe("leases in the state store", () => {
  const tmp = tempDir("leases");
  let store: Store;
  let repo: MigrationRepo;

  beforeAll(async () => {
    store = await openStore({ dataDir: tmp.dir });
    repo = new MigrationRepo(store.db);
  });

  afterAll(async () => {
    await store?.close();
    await store?.embedded?.destroy();
    tmp.remove();
  });

  it("gives a lease to one holder at a time, and refuses the writes of a holder that lost it", async () => {
    const { row } = await repo.create({
      id: "m-1",
      requestId: null,
      databaseName: "db",
      provider: "local",
      sourceKey: "local:s",
      targetKey: "local:t",
      spec: {},
      actor: "test",
    });
    const a = new Leases(store.db, "replica-a", 300);
    const b = new Leases(store.db, "replica-b", 300);
    const leaseA = await a.acquire("migration:m-1");
    expect(leaseA).toBeDefined();
    expect(await b.acquire("migration:m-1")).toBeUndefined();
    // A renews and writes while it holds the lease.
    expect(await a.renew(leaseA!)).toBe(true);
    await repo.transition(leaseA!, row.id, "PENDING", "PREFLIGHT", "engine", "by a");
    // A stalls past its lease; B takes over with a greater fencing token.
    await new Promise((r) => setTimeout(r, 400));
    const leaseB = await b.acquire("migration:m-1");
    expect(Number(leaseB!.token)).toBeGreaterThan(Number(leaseA!.token));
    expect(await a.renew(leaseA!)).toBe(false);
    await expect(
      repo.transition(leaseA!, row.id, "PREFLIGHT", "PROVISIONING", "engine", "stale a"),
    ).rejects.toMatchObject({ kind: "LeaseLostError" });
    await expect(repo.record(leaseA!, row.id, { type: "STEP_STARTED", actor: "engine" })).rejects.toMatchObject({
      kind: "LeaseLostError",
    });
    await repo.transition(leaseB!, row.id, "PREFLIGHT", "PROVISIONING", "engine", "by b");
    const history = await repo.phaseHistory([row.id]);
    expect(history.map((e) => [e.phase_to, e.message])).toEqual([
      ["PENDING", expect.any(String)],
      ["PREFLIGHT", "by a"],
      ["PROVISIONING", "by b"],
    ]);
    // An illegal transition is refused whoever holds the lease.
    await expect(repo.transition(leaseB!, row.id, "PROVISIONING", "COMPLETED", "engine", "skip")).rejects.toMatchObject(
      { code: 9 },
    );
  });
});
