import { describe, expect, it } from "vitest";
import { check, newVerdicts } from "../../src/domain/check.js";
import { compareBaselines } from "../../src/checks/baseline.js";
import type { Baseline } from "../../src/domain/state.js";
import { extensionCheck, parameterCheck, slotChecks } from "../../src/checks/preflight.js";
import type { InstanceDescription } from "../../src/providers/provider.js";

const desc = (over: Partial<InstanceDescription>): InstanceDescription => ({
  ref: { id: "src" },
  versionNum: 150018,
  major: 15,
  sizeBytes: 0n,
  databases: ["app"],
  settings: {},
  extensions: [],
  slots: [],
  inRecovery: false,
  currentLsn: "0/1",
  ...over,
});

describe("check verdicts", () => {
  it("flags an extension installed on the source that the target cannot run, and a version the target lacks", () => {
    const src = desc({
      extensions: [
        { name: "postgis", version: "3.4.0", database: "app" },
        { name: "hstore", version: "1.8", database: "app" },
      ],
    });
    const fail = extensionCheck(src, new Map([["hstore", ["1.8"]]]));
    expect(fail.status).toBe("FAIL");
    expect(fail.measured).toContain("postgis 3.4.0 (in app)");
    const warn = extensionCheck(
      src,
      new Map([
        ["hstore", ["1.7"]],
        ["postgis", ["3.4.0"]],
      ]),
    );
    expect(warn.status).toBe("WARN");
    expect(warn.measured).toContain("hstore 1.8");
    expect(
      extensionCheck(
        src,
        new Map([
          ["hstore", ["1.8"]],
          ["postgis", ["3.4.0"]],
        ]),
      ).status,
    ).toBe("PASS");
  });

  it("reports settings that differ, flags the ones that matter, ignores the ones that differ by construction", () => {
    const r = parameterCheck(
      { work_mem: "7168", port: "5432", cpu_tuple_cost: "0.01", rds_only: "on" },
      { work_mem: "4096", port: "6543", cpu_tuple_cost: "0.02" },
    );
    expect(r.status).toBe("WARN");
    expect(r.measured).toContain("differ and matter: work_mem: 7168 -> 4096");
    expect(r.measured).toContain("not supported on the target: rds_only");
    expect(r.measured).toContain("cpu_tuple_cost: 0.01 -> 0.02");
    expect(r.measured).not.toMatch(/\bport:/);
    expect(parameterCheck({ port: "1" }, { port: "2" }).status).toBe("PASS");
  });

  it("fails on inactive logical slots only, naming each with the WAL it retains", () => {
    const slots = [
      {
        name: "cdc_live",
        type: "logical" as const,
        plugin: "pgoutput",
        database: "app",
        active: true,
        restartLsn: "0/1",
        confirmedFlushLsn: "0/1",
        retainedBytes: 10n,
      },
      {
        name: "cdc_dead",
        type: "logical" as const,
        plugin: "pgoutput",
        database: "app",
        active: false,
        restartLsn: "0/1",
        confirmedFlushLsn: "0/1",
        retainedBytes: 5n * 1024n * 1024n,
      },
      {
        name: "replica",
        type: "physical" as const,
        plugin: null,
        database: null,
        active: false,
        restartLsn: "0/1",
        confirmedFlushLsn: null,
        retainedBytes: 1n,
      },
    ];
    const [r] = slotChecks(desc({ slots }));
    expect(r!.status).toBe("FAIL");
    expect(r!.measured).toBe("cdc_dead (pgoutput, database app) retains 5.0 MiB");
    expect(r!.remedy).toContain("pg_drop_replication_slot('cdc_dead')");
  });

  it("compares the target after cutover with the source before, within tolerances", () => {
    const before: Baseline = {
      commitsPerSec: 200,
      rollbacksPerSec: 0,
      connections: 3,
      commitP50Ms: 1,
      commitP99Ms: 4,
      sampledMs: 1000,
    };
    expect(compareBaselines(before, { ...before, commitsPerSec: 180, commitP99Ms: 10 }).status).toBe("PASS");
    const slow = compareBaselines(before, { ...before, commitsPerSec: 60, commitP99Ms: 120, rollbacksPerSec: 30 });
    expect(slow.status).toBe("FAIL");
    expect(slow.measured).toContain("throughput fell from 200.0 to 60.0 commits/s");
    expect(slow.measured).toContain("commit p99 rose from 4.0 to 120.0 ms");
    expect(slow.measured).toContain("rollbacks rose");
    // An idle source gives no throughput to hold the target to.
    expect(compareBaselines({ ...before, commitsPerSec: 0.5 }, { ...before, commitsPerSec: 0 }).status).toBe("PASS");
  });
});

describe("newVerdicts: which verdicts a state write logs as events", () => {
  const c = (name: string, status: "PASS" | "WARN" | "FAIL", message = "m", measured = "1") => ({
    ...check(name, status, { message, measured }),
  });
  it("a new check, a changed status or message; not the same verdict with a moving figure", () => {
    const prev = [c("a", "PASS"), c("b", "WARN"), c("d", "PASS", "quiet")];
    const next = [c("a", "PASS", "m", "2"), c("b", "FAIL"), c("d", "PASS", "loud"), c("e", "PASS")];
    expect(newVerdicts(prev, next).map((x) => x.name)).toEqual(["b", "d", "e"]);
    expect(newVerdicts([], prev).map((x) => x.name)).toEqual(["a", "b", "d"]);
  });
});
