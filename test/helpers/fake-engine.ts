import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { check, mergeChecks, type CheckResult } from "../../src/domain/check.js";
import type { PhaseName } from "../../src/domain/phases.js";
import { normalizeSpec, resolveSpec, sourceRef, specToJson, targetRef } from "../../src/domain/spec.js";
import type { Baseline, MigrationStateJson } from "../../src/domain/state.js";
import type { Activities, StepEnv } from "../../src/engine/step-env.js";
import {
  CutoverMode,
  FailurePolicy,
  MigrationSpecSchema,
  Provider as ProviderKind,
  type MigrationSpec,
} from "../../src/gen/migration/v1/migration_pb.js";
import type { MigrationRow } from "../../src/store/migration-repo.js";
import type { CompareReport } from "../../src/checks/data-compare.js";
import type { GuardrailBlocker } from "../../src/checks/guardrails.js";
import type { TableDrift } from "../../src/checks/schema-drift.js";
import type { DatabaseInventory, SchemaInventory } from "../../src/checks/schema-inventory.js";
import { FakeProvider } from "./fake-provider.js";
import { FakeRouter } from "./fake-router.js";

/** An inventory of one database holding only what `fields` gives it. */
export function emptyInventory(database: string, fields: Partial<DatabaseInventory> = {}): SchemaInventory {
  return {
    databases: [
      {
        database,
        identified: [],
        keyless: [],
        unlogged: [],
        partitioned: [],
        foreign: [],
        materializedViews: [],
        largeObjects: 0,
        largeObjectBytes: 0,
        publications: [],
        subscriptions: [],
        eventTriggers: [],
        fingerprint: "",
        ...fields,
      },
    ],
    prepared: [],
  };
}

export const HEALTHY_BASELINE: Baseline = {
  commitsPerSec: 100,
  rollbacksPerSec: 0,
  connections: 4,
  commitP50Ms: 1,
  commitP99Ms: 3,
  sampledMs: 2000,
};

/** Fake activities: each call is logged; results come from the fake provider's state or from what a test sets. */
export class FakeActivities implements Activities {
  readonly calls: string[] = [];
  /** Baselines the target yields in VERIFYING, one per sample (the last repeats). */
  targetBaselines: Baseline[] = [HEALTHY_BASELINE];
  rollbackWarning: CheckResult | undefined;
  private targetSamples = 0;

  constructor(private readonly provider: FakeProvider) {}

  private log(name: string): void {
    this.calls.push(name);
  }

  cdc: Activities["cdc"] = {
    inventory: async (ctx) => {
      this.log("cdc.inventory");
      ctx.state.cdcSlots = [];
      return 0;
    },
    drainAndPause: async (_ctx, finalLsn) => {
      this.log(`cdc.drainAndPause(${finalLsn})`);
      return "no logical slots to coordinate";
    },
    observeReaders: async () => {
      this.log("cdc.observeReaders");
      return false;
    },
    closeReaderWatch: () => {
      this.log("cdc.closeReaderWatch");
    },
    settleOnSource: async () => {
      this.log("cdc.settleOnSource");
    },
    restoreOnTarget: async () => {
      this.log("cdc.restoreOnTarget");
      return "no logical slots to restore";
    },
    releaseSourceSlots: async () => this.log("cdc.releaseSourceSlots"),
    rollbackSlots: async () => {
      this.log("cdc.rollbackSlots");
      return this.rollbackWarning;
    },
    resumeOnSource: async () => this.log("cdc.resumeOnSource"),
  };

  /** The source's schema inventory, as a test sets it: by default one database with one table with a primary key. */
  inventory: SchemaInventory = emptyInventory("app", { identified: ["public.items"] });
  /** What successive guardrail looks find on the source (the last repeats). */
  guardrailBlockers: GuardrailBlocker[][] = [[]];
  private guardrailLooks = 0;
  /** The DDL statements the target recorded. */
  capturedStatements: Array<{ at: string; tag: string; statement: string }> = [];
  /** What successive schema comparisons find (the last repeats). */
  drifts: TableDrift[][] = [[]];
  private driftLooks = 0;

  schema: Activities["schema"] = {
    inventory: async (_p, ref) => {
      this.log(`schema.inventory(${ref.id})`);
      return this.inventory;
    },
    guardrails: async (_p, ref) => {
      this.log(`schema.guardrails(${ref.id})`);
      return this.guardrailBlockers[Math.min(this.guardrailLooks++, this.guardrailBlockers.length - 1)]!;
    },
    drift: async () => {
      this.log("schema.drift");
      return this.drifts[Math.min(this.driftLooks++, this.drifts.length - 1)]!;
    },
    captureDdl: async () => this.log("schema.captureDdl"),
    capturedDdl: async () => {
      this.log("schema.capturedDdl");
      return this.capturedStatements;
    },
  };

  reverse: Activities["reverse"] = {
    prepare: async (_p, _s, inv) => {
      this.log("reverse.prepare");
      return inv.databases.map((d) => ({ database: d.database, all: d.identified, inserts: d.keyless }));
    },
    coverNewTables: async () => {
      this.log("reverse.coverNewTables");
      return [];
    },
    carryLargeObjects: async () => {
      this.log("reverse.carryLargeObjects");
      return { copied: 0, removed: 0, bytes: 0 };
    },
    probe: async () => {
      this.log("reverse.probe");
      return this.reversePathErrors.shift();
    },
    reserve: async (_p, _t, dbs) => this.log(`reverse.reserve(${dbs.join(",")})`),
    start: async (_p, _s, _t, dbs) => this.log(`reverse.start(${dbs.join(",")})`),
    flushCommits: async () => this.log("reverse.flushCommits"),
    drain: async () => this.log("reverse.drain"),
    stop: async () => this.log("reverse.stop"),
    backlog: async () => {
      this.log("reverse.backlog");
      const b = this.reverseBacklogs[Math.min(this.backlogSamples++, this.reverseBacklogs.length - 1)]!;
      return { ...b, slots: 1 };
    },
  };
  /** What successive reverse backlog samples return (the last one repeats). */
  reverseBacklogs: Array<{ lagBytes: bigint; retainedBytes: bigint; targetLsn: string }> = [
    { lagBytes: 0n, retainedBytes: 0n, targetLsn: "0/3000000" },
  ];
  private backlogSamples = 0;
  /** What successive reverse-path probes answer (an error message each); empty: the path works. */
  reversePathErrors: string[] = [];

  /** Keys snapshots were held under (the fake holds nothing: a comparison finds the report a test sets). */
  held = new Set<string>();
  /** What a comparison of held snapshots reports. */
  compareReport: CompareReport = { databases: 1, tables: 1, ranges: 1, rows: 10, mismatches: [], ms: 1 };

  verify: Activities["verify"] = {
    open: async (_p, _s, _t, _dbs, key) => {
      this.log(`verify.open(${key})`);
    },
    hold: async (_p, _s, _t, _dbs, key) => {
      this.log(`verify.hold(${key})`);
      this.held.add(key);
    },
    compareHeld: async (key) => {
      this.log(`verify.compareHeld(${key})`);
      return this.held.delete(key) ? this.compareReport : undefined;
    },
  };

  probes: Activities["probes"] = {
    baseline: async (_p, ref) => {
      this.log(`probes.baseline(${ref.id})`);
      if (!this.provider.instance(ref).replicaOf && this.provider.instance(ref).promotions === 0)
        return HEALTHY_BASELINE;
      const b = this.targetBaselines[Math.min(this.targetSamples, this.targetBaselines.length - 1)]!;
      this.targetSamples++;
      return b;
    },
    targetWritable: async (_p, ref) => {
      this.log(`probes.targetWritable(${ref.id})`);
      const rec = this.provider.instance(ref).inRecovery;
      return check("verify.target_writable", rec ? "FAIL" : "PASS", {
        measured: rec ? "in recovery" : "writable primary",
      });
    },
  };
}

export interface World {
  provider: FakeProvider;
  router: FakeRouter;
  activities: FakeActivities;
  /** Check results reported mid-step, in order. */
  reports: CheckResult[];
  /** CDC notes, in order. */
  notes: string[];
  /** How often a step persisted its state without an event (env.save). */
  saves: number;
  /** Set to make `interrupted()` answer true (an operator's request). */
  interrupt: boolean;
}

export function newWorld(): World {
  const provider = new FakeProvider();
  provider.addSource("billing");
  return {
    provider,
    router: new FakeRouter(),
    activities: new FakeActivities(provider),
    reports: [],
    notes: [],
    saves: 0,
    interrupt: false,
  };
}

/** A normalized spec for billing -> billing-aurora with short windows, overridable. */
export function testSpec(
  overrides: Omit<MessageInitShape<typeof MigrationSpecSchema>, "$typeName"> = {},
): MigrationSpec {
  return normalizeSpec(
    create(MigrationSpecSchema, {
      databaseName: "billing-db",
      provider: ProviderKind.LOCAL,
      source: { id: "billing" },
      target: { id: "billing-aurora" },
      cutoverMode: CutoverMode.AUTOMATIC,
      failurePolicy: FailurePolicy.ROLLBACK,
      lagPolicy: { maxLagBytes: 1024n * 1024n, maxLagTime: durationFromMs(5000), window: durationFromMs(200) },
      ...overrides,
    }),
  );
}

export interface EnvOptions {
  phase: PhaseName;
  spec?: MigrationSpec;
  state?: MigrationStateJson;
  row?: Partial<MigrationRow>;
  remainingMs?: number;
}

/** The StepEnv the driver would build, over the world's fakes. */
export function stepEnv(world: World, opts: EnvOptions): StepEnv {
  const spec = opts.spec ?? testSpec();
  const state: MigrationStateJson = opts.state ?? {};
  const row: MigrationRow = {
    id: "m-1",
    request_id: null,
    database_name: spec.databaseName,
    provider: "local",
    source_key: `local:${spec.source!.id}`,
    target_key: `local:${spec.target!.id}`,
    spec: specToJson(spec),
    phase: opts.phase,
    paused: false,
    cutover_approved: false,
    state,
    created_by: "test",
    created_at: new Date(),
    updated_at: new Date(),
    version: 1,
    requested_action: null,
    ...opts.row,
  };
  return {
    row,
    spec,
    policy: resolveSpec(spec),
    provider: world.provider,
    router: world.router,
    activities: world.activities,
    source: sourceRef(spec),
    target: targetRef(spec),
    signal: new AbortController().signal,
    remainingMs: opts.remainingMs ?? 60_000,
    baselineSampleMs: 10,
    state,
    // As the driver's: merged into the state, and recorded.
    report: async (r) => {
      state.checks = mergeChecks(state.checks ?? [], [r]);
      world.reports.push(r);
    },
    interrupted: async () => world.interrupt,
    note: async (m) => void world.notes.push(m),
    save: async () => void world.saves++,
    trace: (_name, fn) => fn(),
  };
}
