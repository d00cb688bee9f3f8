import { describe, expect, it } from "vitest";
import { freePort } from "../src/postgres/ports.js";
import { createSampleSource } from "../testing/sample.js";
import { migrationClient, unary } from "./helpers/grpc-clients.js";
import { getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess } from "./helpers/service-process.js";
import { useService } from "./helpers/fixture.js";
import { sigkillAtEveryPhase } from "./helpers/sigkill-suite.js";
import { storeClient, storeUrl } from "./helpers/embedded-store.js";

describe("the engine survives SIGKILL at every phase and hands migrations between replicas", () => {
  // One xDS port across restarts, so the application's proxy reconnects to whichever process runs.
  const f = useService("faults", "faults-sidecar", async () => [
    "--lease-ms",
    "2000",
    "--xds-port",
    String(await freePort()),
  ]);
  const provider = f.provider;

  sigkillAtEveryPhase(f, () => ({
    clusters: provider,
    source: (name) => createSampleSource(provider, name, { rows: 500 }),
    spec: (name, mode) => localSpec(`${name}-db`, `${name}-src`, `${name}-tgt`, { cutover_mode: mode }),
    target: (name) => `${name}-tgt`,
    // The local fence: a reject rule in pg_hba.conf.
    sourceRefusesApplication: (name) => provider.isFenced({ id: name }),
  }));

  it("two replicas on one store: each migration driven by one of them; killing one hands its migrations to the other", async () => {
    const second = await startServiceProcess([...f.args, "--database-url", storeUrl(f.dir), "--xds-port", "0"]);
    const client2 = migrationClient(second.address);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      await createSampleSource(provider, `multi-${i}-src`, { rows: 100 });
      const c = i % 2 === 0 ? f.client : client2;
      ids.push(
        (await unary(c, "CreateMigration", { spec: localSpec(`multi-${i}-db`, `multi-${i}-src`, `multi-${i}-tgt`) }))
          .migration.id,
      );
    }
    for (const id of ids) await waitForPhase(client2, id, ["PHASE_READY_FOR_CUTOVER"]);
    const db = storeClient(f.dir);
    await db.connect();
    const holders = async () =>
      (
        await db.query("select name, holder, token from leases where name = any($1) and expires_at > now()", [
          ids.map((id) => `migration:${id}`),
        ])
      ).rows;
    const before = await holders();
    expect(before).toHaveLength(4);
    // Kill whichever replica drives at least one of them; the other must take over.
    const byHolder = new Map<string, number>();
    for (const h of before) byHolder.set(h.holder, (byHolder.get(h.holder) ?? 0) + 1);
    await f.svc.kill();
    f.client.close();
    for (const id of ids) await unary(client2, "ApproveCutover", { id });
    for (const id of ids) {
      const { phase, events } = await waitForPhase(client2, id, ["PHASE_COMPLETED", "PHASE_FAILED"]);
      expect(phase).toBe("PHASE_COMPLETED");
      const entered = events.filter((e) => e.type === "EVENT_TYPE_PHASE_CHANGED").map((e) => e.transition.to);
      expect(new Set(entered).size).toBe(entered.length);
    }
    const after = await holders();
    // One survivor drives everything now (or has released what it finished).
    expect(new Set(after.map((h) => h.holder)).size).toBeLessThanOrEqual(1);
    // A migration whose holder died was taken with a greater fencing token.
    const moved = before.filter((b) => !after.some((a) => a.name === b.name && a.holder === b.holder));
    const tokens = await db.query("select name, token from leases where name = any($1)", [moved.map((m) => m.name)]);
    for (const t of tokens.rows)
      expect(Number(t.token)).toBeGreaterThan(Number(before.find((b) => b.name === t.name)!.token));
    await db.end();
    for (const id of ids) expect((await getMigration(client2, id)).phase).toBe("PHASE_COMPLETED");
    client2.close();
    // The survivor carries on as the test's service.
    f.svc = second;
    f.client = migrationClient(second.address);
    expect(byHolder.size).toBeGreaterThanOrEqual(1);
  });
});
