import { describe, expect, it } from "vitest";
import { freePort } from "../src/postgres/ports.js";
import { type LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../src/providers/local/sample.js";
import { WriteLoad } from "../src/workload/write-load.js";
import { migrationClient, unary } from "./helpers/grpc-clients.js";
import { getMigration, localSpec, waitForPhase } from "./helpers/migrations.js";
import { startServiceProcess } from "./helpers/service-process.js";
import { useService } from "./helpers/fixture.js";
import { storeClient, storeUrl } from "./helpers/embedded-store.js";

/** Timeline 2 means promoted exactly once; a second promotion would have made it 3. */
async function timeline(provider: LocalProvider, id: string): Promise<number> {
  // Promotion requests its checkpoint in the background; take one so the control file tells the timeline.
  await provider.cluster({ id }).query("checkpoint");
  const r = await provider.cluster({ id }).query<{ t: number }>("select timeline_id as t from pg_control_checkpoint()");
  return r[0]!.t;
}

describe("the engine survives SIGKILL at every phase and hands migrations between replicas", () => {
  // One xDS port across restarts, so the application's proxy reconnects to whichever process runs.
  const f = useService("faults", "faults-sidecar", async () => ["--lease-ms", "2000", "--xds-port", String(await freePort())]);
  const provider = f.provider;

  const killAt = ["PROVISIONING", "REPLICATING", "QUIESCING", "FINAL_SYNC", "PROMOTING", "ROUTING", "VERIFYING"];
  for (const phase of killAt) {
    it(`killed with SIGKILL on reaching ${phase}, restarted, it completes with each side effect done once`, async () => {
      const name = phase.toLowerCase().replace(/_/g, "-");
      const { app } = await createSampleSource(provider, `${name}-src`, { rows: 500 });
      const m = (
        await unary(f.client, "CreateMigration", { spec: localSpec(`${name}-db`, `${name}-src`, `${name}-tgt`, { cutover_mode: "CUTOVER_MODE_AUTOMATIC" }) })
      ).migration;
      const port = await f.proxy.waitForListener(`${name}-db`);
      const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 100 });
      load.start();
      await waitForPhase(f.client, m.id, [`PHASE_${phase}`, "PHASE_COMPLETED", "PHASE_FAILED"]);
      await f.restart();
      const { phase: end, events } = await waitForPhase(f.client, m.id, ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"]);
      await load.stop();
      expect(end, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
      // Each phase was entered once: nothing was redone from the start.
      const entered = events.filter((e) => e.type === "EVENT_TYPE_PHASE_CHANGED").map((e) => e.transition.to);
      expect(new Set(entered).size).toBe(entered.length);
      // Each step's intent is in the log before its work; a step the crash interrupted shows as resumed, never as started twice by one driver.
      const intents = events.filter((e) => e.type === "EVENT_TYPE_STEP_STARTED");
      for (const p of entered.filter((p: string) => p !== "PHASE_COMPLETED")) expect(intents.map((e) => e.step)).toContain(p.replace("PHASE_", ""));
      for (const e of intents.filter((e) => / resumed by a new driver/.test(e.message))) expect(intents.filter((i) => i.step === e.step).length).toBe(2);
      // Promoted exactly once; one replica, no leftover slot on the source.
      expect(await timeline(provider, `${name}-tgt`)).toBe(2);
      expect((await provider.describe({ id: `${name}-src` })).slots).toEqual([]);
      // Only the target takes client traffic: the source stays fenced behind it.
      expect(await provider.isFenced({ id: `${name}-src` })).toBe(true);
      // Every id the application saw committed is on the target.
      const ids = new Set((await provider.cluster({ id: `${name}-tgt` }).query<{ id: string }>("select id::text from items", [], "app")).map((r) => r.id));
      expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
      // The route moved once: version 1 (source) then 2 (target), pointing at the target.
      const db = storeClient(f.dir);
      await db.connect();
      const route = (await db.query("select port, version from routes where database_name = $1", [`${name}-db`])).rows[0];
      await db.end();
      expect(route).toEqual({ port: provider.cluster({ id: `${name}-tgt` }).port, version: "2" });
    });
  }

  it("two replicas on one store: each migration driven by one of them; killing one hands its migrations to the other", async () => {
    const second = await startServiceProcess([...f.args, "--database-url", storeUrl(f.dir), "--xds-port", "0"]);
    const client2 = migrationClient(second.address);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      await createSampleSource(provider, `multi-${i}-src`, { rows: 100 });
      const c = i % 2 === 0 ? f.client : client2;
      ids.push((await unary(c, "CreateMigration", { spec: localSpec(`multi-${i}-db`, `multi-${i}-src`, `multi-${i}-tgt`) })).migration.id);
    }
    for (const id of ids) await waitForPhase(client2, id, ["PHASE_READY_FOR_CUTOVER"]);
    const db = storeClient(f.dir);
    await db.connect();
    const holders = async () =>
      (await db.query("select name, holder, token from leases where name = any($1) and expires_at > now()", [ids.map((id) => `migration:${id}`)])).rows;
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
    for (const t of tokens.rows) expect(Number(t.token)).toBeGreaterThan(Number(before.find((b) => b.name === t.name)!.token));
    await db.end();
    for (const id of ids) expect((await getMigration(client2, id)).phase).toBe("PHASE_COMPLETED");
    client2.close();
    // The survivor carries on as the test's service.
    f.svc = second;
    f.client = migrationClient(second.address);
    expect(byHolder.size).toBeGreaterThanOrEqual(1);
  });
});
