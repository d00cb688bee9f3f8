import { expect, it } from "vitest";
import type { LocalProvider } from "../../src/providers/local/local-provider.js";
import { WriteLoad } from "../../testing/workload/write-load.js";
import { storeClient } from "./embedded-store.js";
import type { ServiceFixture } from "./fixture.js";
import { unary } from "./grpc-clients.js";
import { waitForPhase } from "./migrations.js";

/** What the SIGKILL suite needs to know of the provider it runs on; the migrations and their assertions are the same. */
export interface KillPlatform {
  /** The real clusters behind the provider: the local provider's own, or those behind the AWS endpoint. */
  clusters: LocalProvider;
  /** A source named `name` with rows, known to the provider; returns the application's role. */
  source(name: string): Promise<{ app: { user: string; password: string; database: string } }>;
  /** A migration of `<name>-db` from that source, with the given cutover mode. */
  spec(name: string, cutoverMode: string): Record<string, unknown>;
  /** The local cluster that is the migration's target. */
  target(name: string): string;
  /** Whether the old source refuses the application now (each provider's own fence, read from the cluster itself). */
  sourceRefusesApplication(name: string, app: { user: string }): Promise<boolean>;
}

/** Timeline 2 means promoted exactly once; a second promotion would have made it 3. */
async function timeline(clusters: LocalProvider, id: string): Promise<number> {
  // Promotion requests its checkpoint in the background; take one so the control file tells the timeline.
  await clusters.cluster({ id }).query("checkpoint");
  const r = await clusters.cluster({ id }).query<{ t: number }>("select timeline_id as t from pg_control_checkpoint()");
  return r[0]!.t;
}

/** Every phase the service is killed on reaching. */
export const KILL_PHASES = [
  "PROVISIONING",
  "REPLICATING",
  "QUIESCING",
  "FINAL_SYNC",
  "PROMOTING",
  "ROUTING",
  "VERIFYING",
];
/**
 * The kills, grouped by migration: one early in it and one late, far enough apart that the first restart is long
 * done when the second phase comes. Every phase is killed in once; four migrations rather than seven.
 */
const KILLS: string[][] = [
  ["PROVISIONING", "FINAL_SYNC"],
  ["REPLICATING", "PROMOTING"],
  ["QUIESCING", "VERIFYING"],
  ["ROUTING"],
];

/**
 * One test per migration: under a live write load, the service is killed with SIGKILL the moment the migration
 * reaches each of its phases, and restarted at once; it must complete with every side effect done once and every
 * committed row on the target. One migration at a time: the tests run beside other files on two cores.
 */
export function sigkillAtEveryPhase(f: ServiceFixture, platform: () => KillPlatform, timeoutMs = 120_000): void {
  for (const phases of KILLS) {
    it(`killed with SIGKILL on reaching ${phases.join(", then on reaching ")}, restarted each time, it completes with each side effect done once`, async () => {
      const p = platform();
      const name = phases[0]!.toLowerCase().replace(/_/g, "-");
      const { app } = await p.source(`${name}-src`);
      const m = (await unary(f.client, "CreateMigration", { spec: p.spec(name, "CUTOVER_MODE_AUTOMATIC") })).migration;
      const port = await f.proxy.waitForListener(`${name}-db`);
      const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 50 });
      load.start();
      const killedIn: string[] = [];
      for (const phase of phases) {
        await waitForPhase(f.client, m.id, [`PHASE_${phase}`, "PHASE_COMPLETED", "PHASE_FAILED"], timeoutMs);
        await f.restart(async () => {
          // Where the kill found it, read from the store while no process runs.
          const db = storeClient(f.dir);
          await db.connect();
          killedIn.push((await db.query("select phase from migrations where id = $1", [m.id])).rows[0].phase);
          await db.end();
        });
      }
      const { phase: end, events } = await waitForPhase(
        f.client,
        m.id,
        ["PHASE_COMPLETED", "PHASE_FAILED", "PHASE_ROLLED_BACK"],
        timeoutMs,
      );
      await load.stop();
      expect(end, events.map((e) => e.message).join(" | ")).toBe("PHASE_COMPLETED");
      // Each kill found it in its phase (or in the next one, for a phase that lasts less than the watch takes to tell).
      const entered = events.filter((e) => e.type === "EVENT_TYPE_PHASE_CHANGED").map((e) => e.transition.to);
      phases.forEach((phase, i) => {
        const at = entered.indexOf(`PHASE_${phase}`);
        expect(entered.slice(at, at + 2), `killed for ${phase} in ${killedIn[i]}`).toContain(`PHASE_${killedIn[i]}`);
      });
      // Each phase was entered once: nothing was redone from the start.
      expect(new Set(entered).size).toBe(entered.length);
      // Each step's intent is in the log before its work; a step a crash interrupted shows as resumed by the next
      // driver, never as started twice by one.
      const intents = events.filter((e) => e.type === "EVENT_TYPE_STEP_STARTED");
      for (const ph of entered.filter((x: string) => x !== "PHASE_COMPLETED"))
        expect(intents.map((e) => e.step)).toContain(ph.replace("PHASE_", ""));
      for (const step of new Set(intents.map((e) => e.step))) {
        expect(
          intents.filter((e) => e.step === step && !/ resumed by a new driver/.test(e.message)),
          `fresh starts of ${step}`,
        ).toHaveLength(1);
      }
      // Promoted exactly once; one replica, no leftover slot on the source.
      const target = p.target(name);
      expect(await timeline(p.clusters, target)).toBe(2);
      expect((await p.clusters.describe({ id: `${name}-src` })).slots).toEqual([]);
      // Only the target takes the application's traffic: the source stays fenced behind it.
      expect(await p.sourceRefusesApplication(`${name}-src`, app)).toBe(true);
      // Every id the application saw committed is on the target.
      const ids = new Set(
        (await p.clusters.cluster({ id: target }).query<{ id: string }>("select id::text from items", [], "app")).map(
          (r) => r.id,
        ),
      );
      expect(load.committed.length).toBeGreaterThan(30);
      expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
      // The route moved once: version 1 (source) then 2 (target), pointing at the target.
      const db = storeClient(f.dir);
      await db.connect();
      const route = (await db.query("select port, version from routes where database_name = $1", [`${name}-db`]))
        .rows[0];
      await db.end();
      expect(route).toEqual({ port: p.clusters.cluster({ id: target }).port, version: "2" });
    });
  }
  it("kills in every phase: the groups above cover each once", () => {
    expect(KILLS.flat().sort()).toEqual([...KILL_PHASES].sort());
  });
}
