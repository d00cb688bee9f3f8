import { beforeEach, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { dataVerdict, type RangeMismatch } from "../../src/checks/data-compare.js";
import { guardrailCheck, type GuardrailBlocker } from "../../src/checks/guardrails.js";
import { schemaChecks } from "../../src/checks/schema-checks.js";
import { schemaDriftCheck } from "../../src/checks/schema-drift.js";
import type { CheckResult } from "../../src/domain/check.js";
import { HoldForOperatorError } from "../../src/domain/errors.js";
import { normalizeSpec } from "../../src/domain/spec.js";
import { watchReverse } from "../../src/engine/reverse-watch.js";
import { STEPS } from "../../src/engine/steps.js";
import { CutoverMode } from "../../src/gen/migration/v1/migration_pb.js";
import { emptyInventory, newWorld, stepEnv, testSpec, type World } from "../helpers/fake-engine.js";
import { codeOf, promoted, replicating, run, to } from "../helpers/step-runs.js";

const NONE = { disposableUnlogged: [], identityFull: [] };
const verdict = (checks: CheckResult[], name: string) => checks.find((c) => c.name === name);

describe("the schema inventory's verdicts", () => {
  it("a clean schema passes every check, and a rollback covers every table", () => {
    const checks = schemaChecks(emptyInventory("app", { identified: ["public.items"] }), NONE);
    expect(checks.filter((c) => c.status !== "PASS")).toEqual([]);
    expect(verdict(checks, "rollback.coverage")?.measured).toMatch(/every table carried back/);
  });

  it("an unlogged table fails with the remedy, unless the spec names it disposable (either form); then a WARN", () => {
    const inv = emptyInventory("app", { unlogged: ["public.cache"] });
    const refused = verdict(schemaChecks(inv, NONE), "schema.unlogged_tables") as any;
    expect(refused).toMatchObject({ status: "FAIL", measured: "unlogged: app.public.cache" });
    expect(refused.remedy).toMatch(/ALTER TABLE public\.cache SET LOGGED.*disposable_unlogged_tables/);
    for (const name of ["public.cache", "app.public.cache"]) {
      expect(
        verdict(schemaChecks(inv, { ...NONE, disposableUnlogged: [name] }), "schema.unlogged_tables")?.status,
      ).toBe("WARN");
    }
    expect(
      verdict(schemaChecks(inv, { ...NONE, disposableUnlogged: ["public.other"] }), "schema.unlogged_tables")?.status,
    ).toBe("FAIL");
    expect(
      verdict(schemaChecks(inv, { ...NONE, disposableUnlogged: ["public.cache"] }), "rollback.coverage")?.measured,
    ).toMatch(/app\.public\.cache: every row \(unlogged\)/);
  });

  it("keyless tables WARN, and rollback readiness names exactly what a rollback would not carry, with why", () => {
    const checks = schemaChecks(
      emptyInventory("app", {
        identified: ["public.items"],
        keyless: ["public.events"],
        materializedViews: ["public.totals"],
      }),
      NONE,
    );
    expect(verdict(checks, "schema.replica_identity")).toMatchObject({
      status: "WARN",
      measured: "without a replica identity: app: public.events",
    });
    const coverage = verdict(checks, "rollback.coverage") as any;
    expect(coverage.status).toBe("WARN");
    expect(coverage.measured).toMatch(
      /app\.public\.events: updates and deletes \(no replica identity; inserts are carried\)/,
    );
    expect(coverage.measured).toMatch(/app\.public\.totals: its contents as refreshed on the target/);
    expect(coverage.measured).not.toMatch(/items/);
    // Named for REPLICA IDENTITY FULL by the spec: carried back whole, no longer a gap.
    const full = schemaChecks(emptyInventory("app", { identified: ["public.items"], keyless: ["public.events"] }), {
      ...NONE,
      identityFull: ["public.events"],
    });
    expect(verdict(full, "schema.replica_identity")).toMatchObject({
      status: "PASS",
      measured: expect.stringContaining("REPLICA IDENTITY FULL"),
    });
    expect(verdict(full, "rollback.coverage")?.status).toBe("PASS");
  });

  it("a subscription on the source fails; large objects, partitions, publications pass with what happens to them; foreign tables and event triggers warn", () => {
    const checks = schemaChecks(
      emptyInventory("app", {
        subscriptions: ["upstream_sub"],
        publications: ["cdc_pub"],
        largeObjects: 3,
        largeObjectBytes: 24576,
        partitioned: ["public.measurements"],
        foreign: ["public.remote"],
        eventTriggers: ["audit_ddl"],
      }),
      NONE,
    );
    expect(verdict(checks, "schema.subscriptions")?.status).toBe("FAIL");
    expect(verdict(checks, "schema.large_objects")).toMatchObject({ status: "PASS", measured: "app: 3 (24.0 KiB)" });
    expect(verdict(checks, "schema.publications")).toMatchObject({
      status: "PASS",
      measured: "publications: app: cdc_pub",
    });
    expect(verdict(checks, "schema.partitioned_tables")?.measured).toMatch(/public\.measurements/);
    expect(verdict(checks, "schema.foreign_tables")?.status).toBe("WARN");
    expect(verdict(checks, "schema.event_triggers")?.status).toBe("WARN");
    const heavy = schemaChecks(emptyInventory("app", { largeObjects: 10, largeObjectBytes: 512 * 1024 * 1024 }), NONE);
    expect(verdict(heavy, "schema.large_objects")?.status).toBe("WARN");
  });

  it("prepared transactions WARN in preflight, named", () => {
    const inv = {
      ...emptyInventory("app"),
      prepared: [{ gid: "tx-42", database: "app", owner: "app", preparedAt: "2026-12-06 10:00:00+00" }],
    };
    expect(verdict(schemaChecks(inv, NONE), "transactions.prepared")).toMatchObject({
      status: "WARN",
      measured: expect.stringContaining("tx-42"),
    });
  });

  it("guardrails: PASS with nothing, WARN while waiting, FAIL when refused, sessions named with their statement", () => {
    const blocker: GuardrailBlocker = {
      kind: "idle in transaction",
      pid: 4242,
      user: "app",
      database: "app",
      application: "batch",
      ageMs: 9000,
      what: "update items set x = 1",
    };
    expect(guardrailCheck([], 5000, 30000, 0, false).status).toBe("PASS");
    expect(guardrailCheck([blocker], 5000, 30000, 100, false).status).toBe("WARN");
    const refused = guardrailCheck([blocker], 5000, 30000, 30000, true);
    expect(refused.status).toBe("FAIL");
    expect(refused.measured).toMatch(
      /idle in transaction pid 4242 \(user app, database app, application batch, open 9\.0 s\): "update items set x = 1"/,
    );
  });

  it("a data comparison: PASS when alike; FAIL naming table and range; WARN when only tables a rollback carries inserts of differ", () => {
    const report = { databases: 1, tables: 2, ranges: 4, rows: 100, ms: 10, mismatches: [] as RangeMismatch[] };
    expect(dataVerdict(report, "after cutover").status).toBe("PASS");
    const m: RangeMismatch = {
      database: "app",
      table: "public.events",
      range: "whole table",
      source: "5 rows",
      target: "4 rows",
    };
    expect(dataVerdict({ ...report, mismatches: [m] }, "after cutover")).toMatchObject({
      status: "FAIL",
      measured: expect.stringContaining("app.public.events whole table: source 5 rows, target 4 rows"),
    });
    expect(dataVerdict({ ...report, mismatches: [m] }, "after rollback", ["app.public.events"]).status).toBe("WARN");
    expect(
      dataVerdict({ ...report, mismatches: [m, { ...m, table: "public.items" }] }, "after rollback", [
        "app.public.events",
      ]).status,
    ).toBe("FAIL");
    // Out of time before the end: what was compared matched, the rest is said to be left.
    expect(dataVerdict({ ...report, incomplete: true }, "after cutover")).toMatchObject({
      status: "WARN",
      measured: expect.stringContaining("then stopped"),
    });
    expect(dataVerdict({ ...report, incomplete: true, mismatches: [m] }, "after cutover").status).toBe("FAIL");
    // Written at every look (a comparison of live sides): not a difference.
    expect(dataVerdict({ ...report, inFlux: ["app.public.events whole table"] }, "now")).toMatchObject({
      status: "WARN",
      measured: expect.stringContaining("written throughout"),
    });
  });

  it("schema drift names each table and which side has what", () => {
    const c = schemaDriftCheck(
      [{ database: "app", table: "public.items", source: "(id bigint)", target: "(id bigint, note text)" }],
      "billing",
    );
    expect(c).toMatchObject({ name: "rollback.schema_changes", status: "WARN" });
    expect(c.measured).toBe("app.public.items is (id bigint, note text) on the target but (id bigint) on the source");
    expect(schemaDriftCheck([], "billing").status).toBe("PASS");
  });

  it("the spec takes disposable unlogged tables by name, refusing what is not a table name", () => {
    const spec = testSpec({
      schemaPolicy: { disposableUnloggedTables: ["public.cache", "app.public.cache", '"My Schema"."T"'] },
    });
    expect(spec.schemaPolicy?.disposableUnloggedTables).toHaveLength(3);
    expect(() =>
      normalizeSpec({
        ...spec,
        schemaPolicy: {
          $typeName: "migration.v1.SchemaPolicy",
          disposableUnloggedTables: ["cache"],
          replicaIdentityFullTables: [],
        },
      }),
    ).toThrow(/disposable_unlogged_tables has "cache", which is not "schema.table"/);
    expect(spec.guardrails?.maxWait).toEqual(durationFromMs(30_000));
  });
});

describe("the schema on the engine's path, on the fakes", () => {
  let world: World;
  beforeEach(() => {
    world = newWorld();
    world.provider.addSource("billing");
  });

  it("PREFLIGHT fails on an unlogged table with the remedy, and passes when the spec names it disposable", async () => {
    world.activities.inventory = emptyInventory("app", { identified: ["public.items"], unlogged: ["public.sessions"] });
    const env = stepEnv(world, { phase: "PREFLIGHT" });
    await expect(STEPS.PREFLIGHT!(env)).rejects.toThrow(
      /schema\.unlogged_tables.*ALTER TABLE public\.sessions SET LOGGED/,
    );
    expect(verdict(env.state.checks ?? [], "schema.unlogged_tables")?.status).toBe("FAIL");
    const ok = await run(world, {
      phase: "PREFLIGHT",
      spec: testSpec({ schemaPolicy: { disposableUnloggedTables: ["public.sessions"] } }),
    });
    expect(to(ok.outcome)).toBe("PROVISIONING");
  });

  it("READY_FOR_CUTOVER looks at the schema again when the cutover starts: a table made unlogged since preflight holds it", async () => {
    await replicating(world);
    const manual = testSpec({ cutoverMode: CutoverMode.MANUAL });
    const first = await run(world, { phase: "READY_FOR_CUTOVER", spec: manual });
    expect(to(first.outcome)).toBe("wait 500");
    world.activities.inventory = emptyInventory("app", { identified: ["public.items"], unlogged: ["public.scratch"] });
    const approved = await run(world, {
      phase: "READY_FOR_CUTOVER",
      spec: manual,
      state: first.env.state,
      row: { cutover_approved: true },
    });
    expect(to(approved.outcome)).toBe("wait 5000");
    expect(verdict(approved.env.state.checks ?? [], "schema.unlogged_tables")).toMatchObject({
      status: "FAIL",
      measured: "unlogged: app.public.scratch",
    });
    expect(world.activities.calls.filter((c) => c === "reverse.prepare")).toHaveLength(1);
    world.activities.inventory = emptyInventory("app", { identified: ["public.items", "public.scratch"] });
    const later = await run(world, {
      phase: "READY_FOR_CUTOVER",
      spec: manual,
      state: approved.env.state,
      row: { cutover_approved: true },
    });
    expect(to(later.outcome)).toBe("QUIESCING");
    // The publications list the tables as they are when the cutover starts.
    expect(world.activities.calls.filter((c) => c === "reverse.prepare")).toHaveLength(2);
  });

  it("QUIESCING waits for long transactions before the fence, then fences", async () => {
    await replicating(world);
    const b: GuardrailBlocker = {
      kind: "long transaction",
      pid: 7,
      user: "app",
      database: "app",
      ageMs: 6000,
      what: "select pg_sleep(10)",
    };
    world.activities.guardrailBlockers = [[b], [b], []];
    const { env, outcome } = await run(world, { phase: "QUIESCING" });
    expect(to(outcome)).toBe("FINAL_SYNC");
    expect(world.provider.instance({ id: "billing" }).fenced).toBe(true);
    expect(world.reports.filter((r) => r.name === "cutover.guardrails").map((r) => r.status)).toEqual(["WARN", "PASS"]);
    void env;
  });

  it("QUIESCING refuses the cutover past spec.guardrails.max_wait, with the sessions named, and fences nothing", async () => {
    await replicating(world);
    world.activities.guardrailBlockers = [
      [{ kind: "prepared transaction", user: "app", database: "app", ageMs: 60_000, what: "tx-9" }],
    ];
    const env = stepEnv(world, {
      phase: "QUIESCING",
      spec: testSpec({ guardrails: { maxWait: durationFromMs(300) } }),
    });
    expect(await codeOf(STEPS.QUIESCING!(env))).toBe(Code.FailedPrecondition);
    expect(world.provider.instance({ id: "billing" }).fenced).toBe(false);
    expect(verdict(env.state.checks ?? [], "cutover.guardrails")).toMatchObject({
      status: "FAIL",
      measured: expect.stringContaining("gid tx-9"),
    });
  });

  it("a schema change after promotion shows in rollback readiness at the next sample, and a rollback holds before fencing", async () => {
    await promoted(world);
    await world.router.route("billing-db", await world.provider.endpoint({ id: "billing-aurora" }), 1000);
    const drift = [{ database: "app", table: "public.items", source: "(id bigint)", target: "(id bigint, note text)" }];
    world.activities.drifts = [[], drift];
    world.activities.capturedStatements = [
      { at: "2026-12-06 16:00:00+00", tag: "ALTER TABLE", statement: "alter table items add column note text" },
    ];
    const completed = stepEnv(world, { phase: "COMPLETED", state: { reverseDatabases: ["app"] } });
    await watchReverse(completed);
    expect(verdict(completed.state.checks ?? [], "rollback.schema_changes")?.status).toBe("PASS");
    await watchReverse(completed);
    expect(verdict(completed.state.checks ?? [], "rollback.schema_changes")).toMatchObject({
      status: "WARN",
      measured: expect.stringContaining('run on the target: "alter table items add column note text"'),
    });

    const env = stepEnv(world, { phase: "ROLLING_BACK", state: { ...completed.state, rollbackFrom: "COMPLETED" } });
    const err = await STEPS.ROLLING_BACK!(env).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HoldForOperatorError);
    expect(String((err as Error).message)).toMatch(/before fencing billing-aurora.*note text/);
    // Nothing moved: the target still takes the traffic, unfenced.
    expect(world.provider.instance({ id: "billing-aurora" }).fenced).toBe(false);
    expect(world.router.routes.get("billing-db")!.endpoint.port).toBe(
      world.provider.instance({ id: "billing-aurora" }).port,
    );
    // Once both sides match, the rollback goes through.
    world.activities.drifts = [[]];
    const again = await run(world, { phase: "ROLLING_BACK", state: { ...env.state } });
    expect(to(again.outcome)).toBe("ROLLED_BACK");
  });
});
