import { beforeEach, describe, expect, it } from "vitest";
import { drainEstimateMs, nextReverseStatus, readinessCheck } from "../../src/domain/rollback-readiness.js";
import { resolveSpec } from "../../src/domain/spec.js";
import { watchReverse } from "../../src/engine/reverse-watch.js";
import { STEPS } from "../../src/engine/steps.js";
import { RollbackExceededAction } from "../../src/gen/migration/v1/migration_pb.js";
import { newWorld, stepEnv, testSpec, type World } from "../helpers/fake-engine.js";

const MiB = 1024n * 1024n;

describe("rollback readiness: reverse replication's backlog measured, judged against the policy", () => {
  it("measures the apply rate between samples and what a rollback's drain would cost", () => {
    const t0 = new Date("2026-01-01T00:00:00Z");
    const a = nextReverseStatus(undefined, {
      lagBytes: 10n * MiB,
      retainedBytes: 12n * MiB,
      targetLsn: "0/10000000",
      at: t0,
    });
    expect(a.applyBytesPerSec).toBeUndefined();
    expect(drainEstimateMs(a)).toBeUndefined();
    // 2 s later the target wrote 8 MiB more and the backlog grew by 2 MiB: the source applied 6 MiB, 3 MiB/s.
    const b = nextReverseStatus(a, {
      lagBytes: 12n * MiB,
      retainedBytes: 14n * MiB,
      targetLsn: "0/10800000",
      at: new Date(t0.getTime() + 2000),
    });
    expect(b.applyBytesPerSec).toBe(3 * 1024 * 1024);
    expect(drainEstimateMs(b)).toBe(4000);
    expect(drainEstimateMs({ ...b, lagBytes: "0" })).toBe(0);
  });

  it("PASS within the limits, WARN past either, with the estimate", () => {
    const p = resolveSpec(
      testSpec({ rollbackPolicy: { maxReverseLagBytes: 8n * MiB, maxTargetRetainedBytes: 64n * MiB } }),
    );
    const s = {
      lagBytes: String(4n * MiB),
      retainedBytes: String(8n * MiB),
      targetLsn: "0/1",
      applyBytesPerSec: 1024 * 1024,
      sampledAt: new Date().toISOString(),
    };
    expect(readinessCheck(s, p).status).toBe("PASS");
    const lagging = readinessCheck({ ...s, lagBytes: String(16n * MiB) }, p);
    expect(lagging).toMatchObject({ name: "rollback.reverse_lag", status: "WARN" });
    expect(lagging.measured).toMatch(/reverse backlog 16(\.0)? MiB.*about 16\.0 s at 1(\.0)? MiB\/s/);
    expect(readinessCheck({ ...s, retainedBytes: String(128n * MiB) }, p).status).toBe("WARN");
  });

  describe("on the fakes", () => {
    let world: World;
    beforeEach(async () => {
      world = newWorld();
      world.provider.addSource("billing");
    });

    const completed = (spec = testSpec()) =>
      stepEnv(world, { phase: "COMPLETED", spec, state: { reverseDatabases: ["app"] } });

    it("WARN only (the default): recorded when the verdict changes, reverse replication kept", async () => {
      const env = completed(testSpec({ rollbackPolicy: { maxReverseLagBytes: 8n * MiB } }));
      world.activities.reverseBacklogs = [
        { lagBytes: 1n * MiB, retainedBytes: 2n * MiB, targetLsn: "0/3000000" },
        { lagBytes: 32n * MiB, retainedBytes: 40n * MiB, targetLsn: "0/5000000" },
      ];
      await watchReverse(env);
      await watchReverse(env);
      await watchReverse(env);
      expect(
        world.reports.filter((r) => r.name === "rollback.reverse_lag").map((r) => `${r.name} ${r.status}`),
      ).toEqual(["rollback.reverse_lag PASS", "rollback.reverse_lag WARN"]);
      expect(env.state.reverse).toMatchObject({ lagBytes: String(32n * MiB), retainedBytes: String(40n * MiB) });
      // A sample whose verdict did not change is still persisted, for GetMigration and the gauges.
      expect(world.saves).toBe(1);
      expect(world.activities.calls.filter((c) => c === "reverse.stop")).toEqual([]);
    });

    it("STOP_REVERSE: past the limit, reverse replication is dropped, said in a check, and never sampled again", async () => {
      const env = completed(
        testSpec({ rollbackPolicy: { maxReverseLagBytes: 8n * MiB, onExceeded: RollbackExceededAction.STOP_REVERSE } }),
      );
      world.activities.reverseBacklogs = [{ lagBytes: 32n * MiB, retainedBytes: 40n * MiB, targetLsn: "0/5000000" }];
      await watchReverse(env);
      await watchReverse(env);
      expect(world.activities.calls.filter((c) => c.startsWith("reverse."))).toEqual([
        "reverse.backlog",
        "reverse.stop",
      ]);
      expect(env.state.reverse?.stoppedReason).toMatch(/^rollback_policy: reverse backlog 32(\.0)? MiB/);
      expect(world.reports.find((r) => r.name === "rollback.lossless")).toMatchObject({ status: "WARN" });
    });

    it("a rollback waits, with the target still writable, for a small backlog before it fences, and says what fencing costs", async () => {
      await world.provider.createReplica({ id: "billing" }, { id: "billing-aurora" }, "m-1");
      world.provider.instance({ id: "billing" }).fenced = true;
      await world.provider.promote({ id: "billing" }, { id: "billing-aurora" });
      const spec = testSpec({ rollbackPolicy: { fenceBelowLagBytes: 4n * MiB, fenceWait: { seconds: 30n } } });
      world.activities.reverseBacklogs = [
        { lagBytes: 64n * MiB, retainedBytes: 64n * MiB, targetLsn: "0/8000000" },
        { lagBytes: 40n * MiB, retainedBytes: 64n * MiB, targetLsn: "0/8800000" },
        { lagBytes: 1n * MiB, retainedBytes: 64n * MiB, targetLsn: "0/9000000" },
      ];
      let fencedWhileWaiting = false;
      const backlog = world.activities.reverse.backlog;
      world.activities.reverse.backlog = async (p, t) => {
        fencedWhileWaiting ||= world.provider.instance({ id: "billing-aurora" }).fenced;
        return backlog(p, t);
      };
      const env = stepEnv(world, {
        phase: "ROLLING_BACK",
        spec,
        state: { rollbackFrom: "COMPLETED", reverseDatabases: ["app"] },
      });
      const outcome = await STEPS.ROLLING_BACK!(env);
      expect(outcome).toMatchObject({ to: "ROLLED_BACK" });
      expect(fencedWhileWaiting).toBe(false);
      const said = world.reports.filter((r) => r.name === "rollback.fence_backlog");
      expect(said.map((r) => r.status)).toEqual(["WARN", "PASS"]);
      expect(said[0]!.measured).toMatch(/reverse backlog 64(\.0)? MiB; fencing now would stop writes for/);
      expect(said[1]!.measured).toMatch(/reverse backlog 1(\.0)? MiB when the target was fenced/);
    });
  });
});
