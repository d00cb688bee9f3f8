import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { pauseAlert } from "../../src/cdc/coordinator.js";
import { directiveFor } from "../../src/cdc/directive.js";
import { verifyStream } from "../../testing/cdc/stream-verdict.js";
import { MigrationSpecSchema } from "../../src/gen/migration/v1/migration_pb.js";
import { isLegalTransition } from "../../src/domain/transitions.js";
import type { MigrationRow } from "../../src/store/migration-repo.js";
import type { CdcStateJson } from "../../src/domain/state.js";

const slot = {
  slotName: "orders_cdc",
  plugin: "pgoutput",
  database: "app",
  confirmedFlushLsn: "0/3000100",
  restartLsn: "0/3000000",
  active: true,
  consumer: "c@local",
  publications: ["p"],
  recordedAt: "2026-11-25T00:00:00Z",
  targetConsistentLsn: "0/4000060",
};
const row = (cdc: CdcStateJson | undefined): MigrationRow =>
  ({ id: "m1", state: { cdcSlots: [slot], cdc } }) as unknown as MigrationRow;
const at = (
  stage: CdcStateJson["stage"],
  side: "source" | "target",
  extra: Partial<CdcStateJson> = {},
): CdcStateJson => ({
  stage,
  side,
  since: "2026-11-25T00:00:01Z",
  endpoint: { host: "h", port: side === "source" ? 1 : 2 },
  ...extra,
});

describe("CDC coordination, pure parts", () => {
  it("drains after the fence: CDC_PREPARE follows FINAL_SYNC and falls back to REPLICATING, never aborts", () => {
    expect(isLegalTransition("FINAL_SYNC", "CDC_PREPARE")).toBe(true);
    expect(isLegalTransition("CDC_PREPARE", "PROMOTING")).toBe(true);
    expect(isLegalTransition("CDC_PREPARE", "REPLICATING")).toBe(true);
    expect(isLegalTransition("CDC_PREPARE", "ABORTED")).toBe(false);
    expect(isLegalTransition("READY_FOR_CUTOVER", "CDC_PREPARE")).toBe(false);
  });

  it("tells a consumer to keep reading, pause at the drain point, then resume on the target or back on the source", () => {
    expect(directiveFor(undefined, "orders_cdc", { host: "h", port: 1 })).toMatchObject({
      action: "KEEP_READING",
      endpoint: { port: 1 },
    });
    expect(directiveFor(row(undefined), "other", { host: "h", port: 1 })).toMatchObject({
      action: "KEEP_READING",
      migrationId: "m1",
    });
    expect(directiveFor(row(at("DRAINING", "source", { drainToLsn: "0/3000200" })), "orders_cdc")).toMatchObject({
      action: "PAUSE",
      drainToLsn: "0/3000200",
      database: "app",
    });
    expect(directiveFor(row(at("ON_TARGET", "target")), "orders_cdc")).toMatchObject({
      action: "RESUME",
      endpoint: { port: 2 },
      resumeFromLsn: "0/4000060",
    });
    expect(directiveFor(row(at("ON_SOURCE", "source", { resumed: true })), "orders_cdc")).toMatchObject({
      action: "RESUME",
      endpoint: { port: 1 },
      resumeFromLsn: "0/3000100",
    });
  });

  it("alerts once per pause that outlasts the threshold", () => {
    const spec = create(MigrationSpecSchema, { cdcPolicy: { pauseAlertAfter: { seconds: 10n } } });
    const state = { cdcSlots: [slot], cdc: at("PAUSED", "source", { pausedSince: "2026-11-25T00:00:00Z" }) };
    const t0 = Date.parse("2026-11-25T00:00:00Z");
    expect(pauseAlert(spec, state, t0 + 9_000)).toBeUndefined();
    const alert = pauseAlert(spec, state, t0 + 11_000);
    expect(alert).toMatchObject({ name: "cdc.paused", status: "WARN" });
    expect(alert!.measured).toContain("orders_cdc paused for 11000 ms");
    expect(pauseAlert(spec, state, t0 + 20_000)).toBeUndefined();
    expect(
      pauseAlert(
        spec,
        { ...state, cdc: at("ON_TARGET", "target", { pausedSince: "2026-11-25T00:00:00Z" }) },
        t0 + 20_000,
      ),
    ).toBeUndefined();
  });

  it("counts lost, duplicated and out-of-order deliveries", () => {
    const ch = (id: number, from = "a") => ({
      table: "items",
      op: "insert" as const,
      row: { id: String(id) },
      commitLsn: "0/1",
      from,
    });
    expect(verifyStream([ch(1), ch(2, "b"), ch(3)], "items", ["1", "2", "3"])).toEqual({
      streamed: 3,
      lost: 0,
      duplicated: 0,
      inOrder: true,
      from: ["a", "b", "a"],
    });
    expect(verifyStream([ch(1), ch(1), ch(3)], "items", ["1", "2", "3"])).toMatchObject({
      lost: 1,
      duplicated: 1,
      inOrder: false,
    });
    expect(verifyStream([ch(2), ch(1)], "items", ["1", "2"])).toMatchObject({ lost: 0, duplicated: 0, inOrder: false });
  });
});
