import { beforeEach, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { check } from "../../src/domain/check.js";
import { HoldForOperatorError, UnavailableError } from "../../src/domain/errors.js";
import { decide, failureInfo } from "../../src/engine/failure-policy.js";
import { PHASES, isTerminal, type PhaseName } from "../../src/domain/phases.js";
import { operatorAction } from "../../src/engine/operator-actions.js";
import { STEPS } from "../../src/engine/steps.js";
import { CutoverMode } from "../../src/gen/migration/v1/migration_pb.js";
import { HEALTHY_BASELINE, newWorld, stepEnv, testSpec, type World } from "../helpers/fake-engine.js";
import { codeOf, promoted, replicating, run, to } from "../helpers/step-runs.js";

/** An inactive logical slot retaining WAL: the classic trap. */
const STALE_SLOT = {
  name: "stale",
  type: "logical" as const,
  plugin: "pgoutput",
  database: "app",
  active: false,
  restartLsn: "0/1000000",
  confirmedFlushLsn: "0/1000000",
  retainedBytes: 1n << 26n,
};

describe("every phase has a step or is waited in, and final phases have none", () => {
  it("maps phases to steps", () => {
    for (const p of PHASES) {
      const expected = !isTerminal(p) && p !== "COMPLETED";
      expect(!!STEPS[p], p).toBe(expected);
    }
  });
});

describe("steps, on a fake provider and router", () => {
  let world: World;
  beforeEach(() => {
    world = newWorld();
  });

  it("PENDING starts the migration", async () => {
    expect(to((await run(world, { phase: "PENDING" })).outcome)).toBe("PREFLIGHT");
  });

  it("PREFLIGHT passes, records its checks and routes the database to the source", async () => {
    const { env, outcome } = await run(world, { phase: "PREFLIGHT" });
    expect(to(outcome)).toBe("PROVISIONING");
    expect(env.state.checks?.map((c) => c.status)).not.toContain("FAIL");
    expect(world.router.routes.get("billing-db")?.endpoint.port).toBe(world.provider.instance({ id: "billing" }).port);
    expect(world.provider.count("createReplica")).toBe(0);
  });

  it("PREFLIGHT fails on a major version the replica cannot run, creating nothing", async () => {
    world.provider.replicaMajorVersion = 16;
    const env = stepEnv(world, { phase: "PREFLIGHT" });
    expect(await codeOf(STEPS.PREFLIGHT!(env))).toBe(Code.FailedPrecondition);
    expect(env.state.checks?.find((c) => c.status === "FAIL")?.name).toMatch(/version/);
    expect(world.provider.instances.has("billing-aurora")).toBe(false);
    expect(world.router.routes.size).toBe(0);
  });

  it("PREFLIGHT lets an inactive logical slot through (it blocks the lag gate instead)", async () => {
    world.provider.instance({ id: "billing" }).slots.push(STALE_SLOT);
    const { env, outcome } = await run(world, { phase: "PREFLIGHT" });
    expect(to(outcome)).toBe("PROVISIONING");
    // A WARN there (nothing it stops is being made yet); the lag gate makes it a FAIL that holds the cutover.
    expect(env.state.checks?.find((c) => c.name === "slots.inactive_logical")?.status).toBe("WARN");
  });

  it("PROVISIONING creates the replica once, however often it runs", async () => {
    expect(to((await run(world, { phase: "PROVISIONING" })).outcome)).toBe("REPLICATING");
    expect(to((await run(world, { phase: "PROVISIONING" })).outcome)).toBe("REPLICATING");
    expect([...world.provider.instances.keys()]).toEqual(["billing", "billing-aurora"]);
    expect(world.provider.instance({ id: "billing-aurora" }).inRecovery).toBe(true);
  });

  it("REPLICATING passes the gate after a whole quiet window, counting its samples", async () => {
    await replicating(world);
    const { env, outcome } = await run(world, { phase: "REPLICATING" });
    expect(to(outcome)).toBe("READY_FOR_CUTOVER");
    const gate = env.state.checks?.find((c) => c.name === "replication.lag_window");
    expect(gate?.status).toBe("PASS");
    expect(gate?.measured).toMatch(/held for 0\.\ds over \d+ samples/);
    expect(env.state.checks?.find((c) => c.name === "settings.parity")).toBeDefined();
  });

  it("REPLICATING keeps waiting while lag is over a threshold, says so, and yields to an operator", async () => {
    await replicating(world);
    world.provider.lag = { bytes: 64n << 20n, seconds: 1 };
    const env = stepEnv(world, { phase: "REPLICATING" });
    setTimeout(() => (world.interrupt = true), 300);
    expect(to(await STEPS.REPLICATING!(env))).toBe("wait 0");
    const warn = world.reports.find((r) => r.name === "replication.lag_window");
    expect(warn?.status).toBe("WARN");
    expect(warn?.measured).toMatch(/64\.0 MiB/);
  });

  it("REPLICATING is blocked by an inactive logical slot, named in the report", async () => {
    await replicating(world);
    world.provider.instance({ id: "billing" }).slots.push(STALE_SLOT);
    const env = stepEnv(world, { phase: "REPLICATING" });
    setTimeout(() => (world.interrupt = true), 400);
    expect(to(await STEPS.REPLICATING!(env))).toBe("wait 0");
    expect(world.reports.some((r) => r.name === "slots.inactive_logical" && r.message.length > 0)).toBe(true);
    expect(world.reports.find((r) => r.name === "replication.lag_window")?.measured).toMatch(
      /blocked by an inactive logical slot/,
    );
  });

  it("REPLICATING fails when the replica is down", async () => {
    await replicating(world);
    world.provider.instance({ id: "billing-aurora" }).running = false;
    expect(await codeOf(STEPS.REPLICATING!(stepEnv(world, { phase: "REPLICATING" })))).toBe(Code.FailedPrecondition);
  });

  it("READY_FOR_CUTOVER records the baseline, the CDC inventory and reverse replication's publication, then waits for approval", async () => {
    await replicating(world);
    const manual = testSpec({ cutoverMode: CutoverMode.MANUAL });
    const first = await run(world, { phase: "READY_FOR_CUTOVER", spec: manual });
    expect(to(first.outcome)).toBe("wait 500");
    expect(first.env.state.baseline).toEqual(HEALTHY_BASELINE);
    expect(first.env.state.reverseDatabases).toEqual(["app"]);
    expect(world.activities.calls).toEqual([
      "probes.baseline(billing)",
      "cdc.inventory",
      "schema.inventory(billing)",
      "reverse.prepare",
      "reverse.probe",
    ]);
    expect(first.env.state.checks?.find((c) => c.name === "rollback.reverse_path")?.status).toBe("PASS");
    // Approved later: the baseline is not taken again.
    const approved = await run(world, {
      phase: "READY_FOR_CUTOVER",
      spec: manual,
      state: first.env.state,
      row: { cutover_approved: true },
    });
    expect(to(approved.outcome)).toBe("QUIESCING");
    expect(world.activities.calls.filter((c) => c.startsWith("probes.baseline"))).toHaveLength(1);
  });

  it("READY_FOR_CUTOVER holds the cutover, automatic or approved, while the source cannot reach the target as reverse replication will", async () => {
    await replicating(world);
    world.activities.reversePathErrors = [
      'could not connect to the publisher: connection to server at "10.0.0.9", port 5432 failed: timeout expired',
    ];
    const held = await run(world, { phase: "READY_FOR_CUTOVER" });
    expect(to(held.outcome)).toBe("wait 10000");
    expect(held.env.state.checks?.find((c) => c.name === "rollback.reverse_path")).toMatchObject({
      status: "FAIL",
      measured: expect.stringContaining("timeout expired"),
      remedy: expect.stringContaining("network path"),
    });
    expect(held.env.state.reversePathAt).toBeUndefined();
    // Fixed: the next look passes it, and the cutover goes on; the path is not probed again.
    const next = await run(world, { phase: "READY_FOR_CUTOVER", state: held.env.state });
    expect(to(next.outcome)).toBe("QUIESCING");
    expect(next.env.state.checks?.find((c) => c.name === "rollback.reverse_path")?.status).toBe("PASS");
    await run(world, { phase: "READY_FOR_CUTOVER", state: next.env.state });
    expect(world.activities.calls.filter((c) => c === "reverse.probe")).toHaveLength(2);
  });

  it("READY_FOR_CUTOVER goes straight on in automatic mode", async () => {
    await replicating(world);
    expect(to((await run(world, { phase: "READY_FOR_CUTOVER" })).outcome)).toBe("QUIESCING");
  });

  it("QUIESCING fences the source", async () => {
    await replicating(world);
    expect(to((await run(world, { phase: "QUIESCING" })).outcome)).toBe("FINAL_SYNC");
    expect(world.provider.instance({ id: "billing" }).fenced).toBe(true);
  });

  it("FINAL_SYNC records the final LSN once, waits for the replica to replay it and hands the CDC streams over meanwhile", async () => {
    await replicating(world);
    world.provider.write({ id: "billing" }, 4096n);
    const { env, outcome } = await run(world, { phase: "FINAL_SYNC" });
    expect(to(outcome)).toBe("CDC_PREPARE");
    expect(env.state.finalLsn).toBe("0/3001000");
    expect(world.activities.calls).toEqual(["cdc.drainAndPause(0/3001000)"]);
    // Resumed after a crash: the recorded final LSN stands, even if the source moved (it cannot, fenced; but the step must not re-read it).
    world.provider.write({ id: "billing" }, 4096n);
    const again = await run(world, { phase: "FINAL_SYNC", state: env.state });
    expect(again.env.state.finalLsn).toBe("0/3001000");
  });

  it("FINAL_SYNC fails when the replica does not reach the final LSN", async () => {
    await replicating(world);
    world.provider.instance({ id: "billing-aurora" }).stalled = true;
    world.provider.write({ id: "billing" }, 4096n);
    expect(await codeOf(STEPS.FINAL_SYNC!(stepEnv(world, { phase: "FINAL_SYNC" })))).toBe(Code.DeadlineExceeded);
  });

  it("the source's storage is watched from PROVISIONING: a WARN, then a hold with the remedy before it runs out", async () => {
    world.provider.storageFigures = {
      freeBytes: 15 * 2 ** 30,
      totalBytes: 100 * 2 ** 30,
      walBytes: 40 * 2 ** 30,
      by: "CloudWatch",
    };
    const warned = await run(world, { phase: "PROVISIONING" });
    expect(to(warned.outcome)).toBe("REPLICATING");
    expect(warned.env.state.checks?.find((c) => c.name === "storage.source")).toMatchObject({
      status: "WARN",
      measured: expect.stringContaining("15.0 GiB free of 100.0 GiB (15.0%), 40.0 GiB of it WAL"),
    });
    world.provider.storageFigures = { ...world.provider.storageFigures, freeBytes: 5 * 2 ** 30 };
    const env = stepEnv(world, { phase: "REPLICATING" });
    const err = await STEPS.REPLICATING!(env).catch((e: Error) => e);
    expect(err).toBeInstanceOf(HoldForOperatorError);
    expect(String((err as Error).message)).toMatch(/holding: .*5\.0 GiB free .*add storage to the source/);
    expect(env.state.checks?.find((c) => c.name === "storage.source")?.status).toBe("FAIL");
    expect(
      decide("REPLICATING", failureInfo(err), 1, {
        maxAttempts: 3,
        initialBackoffMs: 1,
        maxBackoffMs: 1,
        failurePolicy: 0,
      }).kind,
    ).toBe("hold");
    // Already that low before the replica is made: nothing is made.
    world.provider.instances.delete("billing-aurora");
    const before = stepEnv(world, { phase: "PROVISIONING" });
    await expect(STEPS.PROVISIONING!(before)).rejects.toBeInstanceOf(HoldForOperatorError);
    expect(world.provider.instances.has("billing-aurora")).toBe(false);
  });

  it("a session past the fence holds the cutover, named: when the final LSN is read, and again before promotion", async () => {
    await replicating(world);
    const source = world.provider.instance({ id: "billing" });
    source.intruders = ["pid 4242 (role postgres, application pgshift-admin, from 127.0.0.1/32)"];
    const env = stepEnv(world, { phase: "FINAL_SYNC" });
    const err = await STEPS.FINAL_SYNC!(env).catch((e: Error) => e);
    await expect(codeOf(Promise.reject(err))).resolves.toBe(Code.FailedPrecondition);
    expect(String((err as Error).message)).toContain("pid 4242 (role postgres, application pgshift-admin");
    expect(env.state.finalLsn).toBeUndefined();
    expect(env.state.checks?.find((c) => c.name === "fence.sessions")).toMatchObject({
      status: "FAIL",
      measured: expect.stringContaining("when the final LSN was read"),
    });
    expect(
      decide("FINAL_SYNC", failureInfo(err), 1, {
        maxAttempts: 3,
        initialBackoffMs: 1,
        maxBackoffMs: 1,
        failurePolicy: 0,
      }).kind,
    ).toBe("fall_back");

    // One that logs in after the final LSN was read is found by the look beside the replay wait, before promotion.
    source.intruders = [];
    const read = await run(world, { phase: "FINAL_SYNC" });
    expect(to(read.outcome)).toBe("CDC_PREPARE");
    source.intruders = ["pid 4343 (role app, application psql, from 127.0.0.1/32)"];
    const again = stepEnv(world, { phase: "FINAL_SYNC", state: { ...read.env.state, checks: [] } });
    expect(await codeOf(STEPS.FINAL_SYNC!(again))).toBe(Code.FailedPrecondition);
    expect(again.state.checks?.find((c) => c.name === "fence.sessions")?.measured).toContain(
      "before promotion: pid 4343",
    );
    expect(world.provider.instance({ id: "billing-aurora" }).promotions).toBe(0);
  });

  it("CDC_PREPARE drains consumers to the final LSN", async () => {
    const { outcome } = await run(world, { phase: "CDC_PREPARE", state: { finalLsn: "0/3001000" } });
    expect(to(outcome)).toBe("PROMOTING");
    expect(world.activities.calls).toEqual(["cdc.drainAndPause(0/3001000)"]);
  });

  it("PROMOTING promotes once, however often it runs, and reserves reverse replication's slots and the CDC slots before any traffic", async () => {
    await replicating(world);
    const state = { reverseDatabases: ["app"] };
    const first = await run(world, { phase: "PROMOTING", state });
    expect(to(first.outcome)).toBe("CDC_RESTORE");
    expect(to((await run(world, { phase: "PROMOTING", state })).outcome)).toBe("CDC_RESTORE");
    expect(world.provider.instance({ id: "billing-aurora" }).promotions).toBe(1);
    // Both sides' snapshots held for the comparison after routing, taken again by a rerun (still before any traffic).
    const hold = `verify.hold(${first.env.row.id}/cutover)`;
    expect(world.activities.calls).toEqual([
      "reverse.reserve(app)",
      "cdc.restoreOnTarget",
      hold,
      "reverse.reserve(app)",
      "cdc.restoreOnTarget",
      hold,
    ]);
    expect(world.router.changes).toHaveLength(0);
  });

  it("CDC_RESTORE recreates slots on the target", async () => {
    expect(to((await run(world, { phase: "CDC_RESTORE" })).outcome)).toBe("ROUTING");
    expect(world.activities.calls).toEqual(["cdc.restoreOnTarget"]);
  });

  it("ROUTING points the database at the target; a second run does not bump the version", async () => {
    await promoted(world);
    expect(to((await run(world, { phase: "ROUTING" })).outcome)).toBe("VERIFYING");
    expect(to((await run(world, { phase: "ROUTING" })).outcome)).toBe("VERIFYING");
    const route = world.router.routes.get("billing-db")!;
    expect(route.endpoint.port).toBe(world.provider.instance({ id: "billing-aurora" }).port);
    expect(route.version).toBe("2");
  });

  it("ROUTING fails on a proxy's NACK", async () => {
    await promoted(world);
    world.router.nack = "egress policy refuses 127.0.0.1";
    expect(await codeOf(STEPS.ROUTING!(stepEnv(world, { phase: "ROUTING" })))).toBe(Code.FailedPrecondition);
  });

  it("VERIFYING attaches reverse replication, releases the replica's slot, looks for CDC readers, proves the target writable and holds it to the baseline", async () => {
    await promoted(world);
    world.activities.held.add(`${stepEnv(world, { phase: "VERIFYING" }).row.id}/cutover`);
    const { env, outcome } = await run(world, {
      phase: "VERIFYING",
      state: { baseline: HEALTHY_BASELINE, reverseDatabases: ["app"] },
    });
    expect(to(outcome)).toBe("COMPLETED");
    expect(world.provider.count("detachReplica")).toBe(1);
    // Off the cutover path: the subscription on the slots PROMOTING reserved, before anything else VERIFYING does.
    expect(world.activities.calls[0]).toBe("reverse.start(app)");
    expect(world.activities.calls).toContain("cdc.observeReaders");
    expect(env.state.checks?.map((c) => `${c.name}:${c.status}`)).toEqual([
      "routing.proxies_current:PASS",
      "verify.target_writable:PASS",
      "verify.data:PASS",
      "baseline.compare:PASS",
    ]);
  });

  it("VERIFYING compares the data once: a mismatch is a FAIL naming table and range, not a failure of the step; lost snapshots a WARN", async () => {
    await promoted(world);
    const key = `${stepEnv(world, { phase: "VERIFYING" }).row.id}/cutover`;
    world.activities.held.add(key);
    world.activities.compareReport = {
      databases: 1,
      tables: 3,
      ranges: 5,
      rows: 900,
      ms: 40,
      mismatches: [
        { database: "app", table: "public.items", range: "id [100, 200)", source: "100 rows", target: "99 rows" },
      ],
    };
    const first = await run(world, { phase: "VERIFYING", state: { reverseDatabases: ["app"] } });
    expect(to(first.outcome)).toBe("COMPLETED");
    expect(first.env.state.checks?.find((c) => c.name === "verify.data")).toMatchObject({
      status: "FAIL",
      measured: expect.stringContaining("app.public.items id [100, 200): source 100 rows, target 99 rows"),
    });
    await run(world, { phase: "VERIFYING", state: first.env.state });
    expect(world.activities.calls.filter((c) => c.startsWith("verify.compareHeld"))).toHaveLength(1);
    const lost = await run(world, { phase: "VERIFYING", state: { reverseDatabases: ["app"] } });
    expect(lost.env.state.checks?.find((c) => c.name === "verify.data")).toMatchObject({
      status: "WARN",
      measured: expect.stringContaining("lost"),
    });
  });

  it("VERIFYING fails a baseline breach only when it holds in three consecutive samples", async () => {
    await promoted(world);
    const slow = { ...HEALTHY_BASELINE, commitsPerSec: 10 };
    world.activities.targetBaselines = [slow, slow, HEALTHY_BASELINE];
    expect(to((await run(world, { phase: "VERIFYING", state: { baseline: HEALTHY_BASELINE } })).outcome)).toBe(
      "COMPLETED",
    );
    const w2 = newWorld();
    await promoted(w2);
    w2.activities.targetBaselines = [slow];
    const env = stepEnv(w2, { phase: "VERIFYING", state: { baseline: HEALTHY_BASELINE } });
    expect(await codeOf(STEPS.VERIFYING!(env))).toBe(Code.FailedPrecondition);
    expect(w2.activities.calls.filter((c) => c === "probes.baseline(billing-aurora)")).toHaveLength(3);
    expect(env.state.checks?.find((c) => c.name === "baseline.compare")?.status).toBe("FAIL");
  });

  it("VERIFYING warns, naming them, about sidecars that have not applied the route to the target", async () => {
    await promoted(world);
    const seen = { identity: "", connected: false, nackedVersion: null, nackMessage: null, lastSeen: new Date() };
    world.router.proxyStatus = [
      { nodeId: "sidecar-a", ackedVersion: "2", behind: false, ...seen, connected: true },
      { nodeId: "sidecar-b", ackedVersion: "1", behind: true, ...seen },
    ];
    expect(to((await run(world, { phase: "VERIFYING" })).outcome)).toBe("COMPLETED");
    const warn = world.reports.find((r) => r.name === "routing.proxies_current");
    expect(warn).toMatchObject({ status: "WARN", measured: "sidecar-b at version 1 (disconnected)" });
  });

  it("VERIFYING fails when the target is still in recovery", async () => {
    await replicating(world);
    const env = stepEnv(world, { phase: "VERIFYING" });
    expect(await codeOf(STEPS.VERIFYING!(env))).toBe(Code.FailedPrecondition);
    expect(env.state.checks?.find((c) => c.name === "verify.target_writable")?.status).toBe("FAIL");
  });

  it("ROLLING_BACK after promotion fences the target, drains its writes to the source, moves CDC back and routes to the source", async () => {
    await promoted(world);
    await world.router.route("billing-db", await world.provider.endpoint({ id: "billing-aurora" }), 1000);
    world.activities.rollbackWarning = check("cdc.rollback_drain", "WARN", { measured: "late" });
    const { env, outcome } = await run(world, {
      phase: "ROLLING_BACK",
      state: { rollbackFrom: "COMPLETED", reverseDatabases: ["app"] },
    });
    expect(to(outcome)).toBe("ROLLED_BACK");
    expect(world.provider.instance({ id: "billing-aurora" }).fenced).toBe(true);
    expect(world.provider.instance({ id: "billing" }).fenced).toBe(false);
    expect(world.provider.instances.has("billing-aurora")).toBe(true);
    expect(world.router.routes.get("billing-db")!.endpoint.port).toBe(world.provider.instance({ id: "billing" }).port);
    expect(world.router.changes.at(-1)!.tolerateNack).toBe(true);
    expect(world.activities.calls).toEqual([
      "reverse.start(app)",
      "schema.drift",
      "reverse.coverNewTables",
      "reverse.backlog",
      "reverse.carryLargeObjects",
      "reverse.flushCommits",
      `verify.open(${env.row.id}/rollback)`,
      "reverse.drain",
      "reverse.carryLargeObjects",
      "cdc.rollbackSlots",
      `verify.hold(${env.row.id}/rollback)`,
      "cdc.resumeOnSource",
      "reverse.stop",
      "cdc.closeReaderWatch",
      `verify.compareHeld(${env.row.id}/rollback)`,
    ]);
    expect(world.reports.map((r) => `${r.name}:${r.status}`)).toEqual([
      "rollback.fence_backlog:PASS",
      "cdc.rollback_drain:WARN",
      "verify.data:PASS",
    ]);
  });

  for (const reverseDatabases of [["app"], []]) {
    it(`ROLLING_BACK after promotion holds for an operator, routing nothing back, when the target cannot be fenced (reverse replication ${reverseDatabases.length ? "on" : "off"})`, async () => {
      await promoted(world);
      await world.router.route("billing-db", await world.provider.endpoint({ id: "billing-aurora" }), 1000);
      world.provider.fail("fence", new UnavailableError("target unreachable"));
      const env = stepEnv(world, { phase: "ROLLING_BACK", state: { rollbackFrom: "COMPLETED", reverseDatabases } });
      const err = await STEPS.ROLLING_BACK!(env).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HoldForOperatorError);
      expect(
        decide("ROLLING_BACK", failureInfo(err), 1, {
          maxAttempts: 5,
          initialBackoffMs: 1,
          maxBackoffMs: 1,
          failurePolicy: 1,
        }).kind,
      ).toBe("hold");
      expect(world.reports.find((r) => r.name === "rollback.fence_target")).toMatchObject({
        status: "FAIL",
        measured: "target unreachable",
      });
      // Nothing went back: the source stays fenced and traffic stays on the target.
      expect(world.provider.instance({ id: "billing" }).fenced).toBe(true);
      expect(world.router.routes.get("billing-db")!.endpoint.port).toBe(
        world.provider.instance({ id: "billing-aurora" }).port,
      );
      expect(world.activities.calls).toEqual(
        reverseDatabases.length
          ? [
              `reverse.start(${reverseDatabases.join(",")})`,
              "schema.drift",
              "reverse.coverNewTables",
              "reverse.backlog",
              "reverse.carryLargeObjects",
              "reverse.flushCommits",
              `verify.open(${env.row.id}/rollback)`,
            ]
          : [],
      );
    });
  }

  it("ROLLING_BACK before promotion removes the target and unfences the source", async () => {
    await replicating(world);
    world.provider.instance({ id: "billing" }).fenced = true;
    const { outcome } = await run(world, { phase: "ROLLING_BACK", state: { rollbackFrom: "FINAL_SYNC" } });
    expect(to(outcome)).toBe("ROLLED_BACK");
    expect(world.provider.instances.has("billing-aurora")).toBe(false);
    expect(world.provider.instance({ id: "billing" }).fenced).toBe(false);
    expect(world.activities.calls).toEqual(["cdc.settleOnSource", "cdc.resumeOnSource", "cdc.closeReaderWatch"]);
  });

  it("ROLLING_BACK from PROMOTING whose promotion never happened (AWS refused it) is one from before promotion; asked once", async () => {
    await replicating(world);
    world.provider.instance({ id: "billing" }).fenced = true;
    const env = stepEnv(world, { phase: "ROLLING_BACK", state: { rollbackFrom: "PROMOTING" } });
    const outcome = await STEPS.ROLLING_BACK!(env);
    expect(to(outcome)).toBe("ROLLED_BACK");
    expect(env.state.rollbackPromoted).toBe(false);
    // Nothing fenced on the replica, which is removed; the source takes writes again.
    expect(world.provider.instances.has("billing-aurora")).toBe(false);
    expect(world.provider.instance({ id: "billing" }).fenced).toBe(false);
    expect(world.activities.calls).toEqual(["cdc.settleOnSource", "cdc.resumeOnSource", "cdc.closeReaderWatch"]);
  });

  it("ROLLING_BACK from PROMOTING whose promotion happened goes the promoted way", async () => {
    await replicating(world);
    await world.provider.promote({ id: "billing" }, { id: "billing-aurora" });
    const env = stepEnv(world, { phase: "ROLLING_BACK", state: { rollbackFrom: "PROMOTING" } });
    const outcome = await STEPS.ROLLING_BACK!(env);
    expect(to(outcome)).toBe("ROLLED_BACK");
    expect(env.state.rollbackPromoted).toBe(true);
    // Kept, fenced, for inspection.
    expect(world.provider.instance({ id: "billing-aurora" }).fenced).toBe(true);
  });
});

describe("operator actions, on the fakes", () => {
  it("abort before the fence removes the target and leaves the source", async () => {
    const world = newWorld();
    await replicating(world);
    const env = stepEnv(world, { phase: "REPLICATING", row: { requested_action: "abort" } });
    expect(await operatorAction(env)!()).toMatchObject({ to: "ABORTED" });
    expect([...world.provider.instances.keys()]).toEqual(["billing"]);
  });

  it("finalize removes reverse replication and retires the source, keeping its data", async () => {
    const world = newWorld();
    await promoted(world);
    const env = stepEnv(world, { phase: "COMPLETED", row: { requested_action: "finalize" } });
    expect(await operatorAction(env)!()).toMatchObject({ to: "FINALIZED" });
    expect(world.activities.calls).toEqual(["reverse.stop", "cdc.releaseSourceSlots"]);
    expect(world.provider.instance({ id: "billing" }).retired).toBe(true);
  });

  it("rollback records where it started", async () => {
    const env = stepEnv(newWorld(), { phase: "ROUTING", row: { requested_action: "rollback" } });
    expect(await operatorAction(env)!()).toMatchObject({ to: "ROLLING_BACK" });
    expect(env.state.rollbackFrom).toBe("ROUTING");
  });

  it("no action where the phase does not allow it", () => {
    const phases: PhaseName[] = ["QUIESCING", "COMPLETED"];
    for (const phase of phases)
      expect(operatorAction(stepEnv(newWorld(), { phase, row: { requested_action: "abort" } }))).toBeUndefined();
    expect(
      operatorAction(stepEnv(newWorld(), { phase: "VERIFYING", row: { requested_action: "finalize" } })),
    ).toBeUndefined();
  });
});
