import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { freePort } from "../src/postgres/ports.js";
import { createSampleSource } from "../testing/sample.js";
import { WriteLoad } from "../testing/workload/write-load.js";
import { unary } from "./helpers/grpc-clients.js";
import { localSpec, waitForPhase } from "./helpers/migrations.js";
import { useService } from "./helpers/fixture.js";
import { storeClient } from "./helpers/embedded-store.js";
import type { PhaseName } from "../src/domain/phases.js";
import { nextForward } from "../src/domain/transitions.js";

/**
 * A crash inside the fenced window must cost seconds, not a lease: the
 * restarted service (same data dir, so the same identity) knows its previous
 * incarnation is dead and takes its leases back at once, with new tokens.
 * The default 10 s lease is kept on purpose: it is what a crash used to cost.
 */
interface Run {
  gap: number;
  /** From the kill to the new process's API answering. */
  restart: number;
  /** From the kill to the new process's xDS server accepting connections. */
  xdsBack: number;
}

/** Resolves, once the port accepts a connection, with the milliseconds since `since`. */
function listeningAgain(port: number, since: number): Promise<number> {
  return new Promise((resolve) => {
    const attempt = () => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(performance.now() - since);
      });
      s.once("error", () => setTimeout(attempt, 10));
    };
    attempt();
  });
}

describe("SIGKILL inside the fenced window, restarted at once", () => {
  const f = useService("crash-window", "crash-sidecar", async () => ["--xds-port", String(await freePort())]);
  const gaps: Record<string, number> = {};

  /**
   * One migration under a writer through the proxy; `crashAt` kills and restarts the service on reaching that phase.
   * Returns the application's longest gap, and how long after the kill the new process served xDS again and answered
   * its API (0 without a crash).
   */
  async function run(name: string, crashAt?: string, rollback = false): Promise<Run> {
    const { app, cluster } = await createSampleSource(f.provider, `${name}-src`, { rows: 200 });
    const m = (
      await unary(f.client, "CreateMigration", {
        spec: localSpec(`${name}-db`, `${name}-src`, `${name}-tgt`, {
          cutover_mode: "CUTOVER_MODE_AUTOMATIC",
          lag_policy: { window: { seconds: 1 } },
        }),
      })
    ).migration;
    const port = await f.proxy.waitForListener(`${name}-db`);
    // Retrying every 50 ms as a connection pool would (a 5 ms retry loop forks a backend per attempt on the fenced source and starves the restarting service of CPU).
    const load = new WriteLoad({ host: "127.0.0.1", port, ...app, ratePerSec: 100, retryDelayMs: 50 });
    let restart = 0;
    let xdsBack: Promise<number> = Promise.resolve(0);
    // Measure only from the cutover on: before it, the load starts and the replica is built.
    await waitForPhase(f.client, m.id, ["PHASE_READY_FOR_CUTOVER"]);
    load.start();
    await new Promise((r) => setTimeout(r, 300));
    if (rollback) {
      expect((await waitForPhase(f.client, m.id, ["PHASE_COMPLETED", "PHASE_ROLLED_BACK", "PHASE_FAILED"])).phase).toBe(
        "PHASE_COMPLETED",
      );
      await new Promise((r) => setTimeout(r, 1000));
      load.longestGapMs = 0;
      await unary(f.client, "RollbackMigration", { id: m.id, reason: "crash drill" });
    }
    // The watch replays from the start: after a rollback request, COMPLETED is behind us and not an end.
    const ends = rollback
      ? ["PHASE_ROLLED_BACK", "PHASE_FAILED"]
      : ["PHASE_COMPLETED", "PHASE_ROLLED_BACK", "PHASE_FAILED"];
    if (crashAt) {
      await waitForPhase(f.client, m.id, [`PHASE_${crashAt}`, ...ends]);
      const t0 = performance.now();
      let killedIn: Promise<string> = Promise.resolve("");
      // From the kill on: when the new process's xDS server accepts the proxy's connection again; and where the kill
      // found the migration, read from the store beside the restart (not before it: that would lengthen the gap).
      await f.restart(async () => {
        xdsBack = listeningAgain(f.svc.xdsPort, t0);
        killedIn = (async () => {
          const db = storeClient(f.dir);
          await db.connect();
          const phase = (await db.query("select phase from migrations where id = $1", [m.id])).rows[0].phase as string;
          await db.end();
          return phase;
        })();
      });
      restart = performance.now() - t0;
      // The kill landed in the phase it is named for (or the next: a phase shorter than the watch takes to tell, or
      // one the new process finished before the store was read).
      const landed = await killedIn;
      expect([crashAt, nextForward(crashAt as PhaseName)], `killed for ${crashAt} in ${landed}`).toContain(landed);
    }
    const end = (await waitForPhase(f.client, m.id, ends)).phase;
    // The application writes again (a gap still open at the end would not count as one).
    const before = load.committed.length;
    for (let i = 0; i < 500 && load.committed.length <= before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(load.committed.length).toBeGreaterThan(before);
    await load.stop();
    expect(end).toBe(rollback ? "PHASE_ROLLED_BACK" : "PHASE_COMPLETED");
    // Nothing the application saw committed is missing where traffic ended up.
    const on = rollback ? cluster : f.provider.cluster({ id: `${name}-tgt` });
    const ids = new Set((await on.query<{ id: string }>("select id::text from items", [], "app")).map((r) => r.id));
    expect(load.committed.filter((id) => !ids.has(id.toString()))).toEqual([]);
    // Never two writable primaries: the side traffic left is fenced.
    expect(await f.provider.isFenced({ id: rollback ? `${name}-tgt` : `${name}-src` })).toBe(true);
    // Done with: finalized (or rolled back, which is final) and its clusters removed, so that the next runs measure
    // the control plane on a machine not also running the clusters of every run before.
    if (!rollback) {
      await unary(f.client, "FinalizeMigration", { id: m.id, reason: "measured" });
      expect((await waitForPhase(f.client, m.id, ["PHASE_FINALIZED", "PHASE_FAILED"])).phase).toBe("PHASE_FINALIZED");
    }
    for (const id of [`${name}-src`, `${name}-tgt`]) await f.provider.cluster({ id }).destroy();
    return { gap: load.longestGapMs, restart, xdsBack: await xdsBack };
  }

  /**
   * The bound is on the raw gap, the new process's start-up included: within 2 s of the uninterrupted one. Printed
   * beside it: when the new process served xDS again after the kill (node loading its modules and opening the store,
   * about half a second idle, 0.7-1 s under this load on a 2-core machine), which is what a late kill (CDC_RESTORE,
   * ROUTING) waits for before the proxy learns the route. This file runs alone on the machine, after the others
   * (vitest.config.ts): the gaps it judges are a few hundred milliseconds.
   */
  function judge(label: string, r: Run, baseline: number): void {
    gaps[label] = r.gap;
    console.log(
      `${label}: longest write gap ${Math.round(r.gap)} ms, ${r.gap <= baseline + 2000 ? "within" : "OVER"} the bound (uninterrupted ${Math.round(baseline)} ms + 2000); the new process served xDS ${Math.round(r.xdsBack)} ms after the kill, its API ${Math.round(r.restart)} ms`,
    );
    expect(r.xdsBack).toBeGreaterThan(0);
    expect(r.gap).toBeLessThanOrEqual(baseline + 2000);
  }

  it("an uninterrupted cutover and rollback, for comparison", async () => {
    gaps["cutover, uninterrupted"] = (await run("plain")).gap;
    gaps["rollback, uninterrupted"] = (await run("plain-rb", undefined, true)).gap;
  });

  for (const phase of ["QUIESCING", "FINAL_SYNC", "PROMOTING", "CDC_RESTORE", "ROUTING"]) {
    it(`killed in ${phase}: the application's longest gap, the new process's start included, stays within 2 s of an uninterrupted cutover's`, async () => {
      judge(
        `killed in ${phase}`,
        await run(phase.toLowerCase().replace(/_/g, "-"), phase),
        gaps["cutover, uninterrupted"]!,
      );
    });
  }

  it("killed in ROLLING_BACK: the application's longest gap, the new process's start included, stays within 2 s of an uninterrupted rollback's", async () => {
    judge("killed in ROLLING_BACK", await run("rolling-back", "ROLLING_BACK", true), gaps["rollback, uninterrupted"]!);
    console.log(
      `longest write gaps (ms): ${JSON.stringify(Object.fromEntries(Object.entries(gaps).map(([k, v]) => [k, Math.round(v)])))}`,
    );
  });
});
