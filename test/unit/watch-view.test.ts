import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { bar, renderWatch } from "../../src/cli/watch-view.js";
import {
  CheckStatus,
  EventType,
  MigrationEventSchema,
  MigrationSchema,
  Phase,
  PhaseTransitionSchema,
} from "../../src/gen/migration/v1/migration_pb.js";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const plus = (ms: number) => timestampFromDate(new Date(t0.getTime() + ms));

describe("ctl watch's live view", () => {
  const m = create(MigrationSchema, {
    id: "m-1",
    phase: Phase.REPLICATING,
    createdAt: plus(0),
    spec: {
      databaseName: "billing-db",
      source: { id: "billing" },
      target: { id: "billing-aurora" },
      lagPolicy: { window: { seconds: 5n } },
    },
    history: [
      { from: Phase.PENDING, to: Phase.PREFLIGHT, at: plus(100) },
      { from: Phase.PREFLIGHT, to: Phase.PROVISIONING, at: plus(900) },
      { from: Phase.PROVISIONING, to: Phase.REPLICATING, at: plus(3000) },
    ],
    replication: {
      state: "streaming",
      lagBytes: 12288n,
      lag: durationFromMs(20),
      walBytesPerSecond: 42 * 1024,
      sampledAt: plus(9500),
      windowHeld: durationFromMs(2500),
    },
  });
  const events = [
    create(MigrationEventSchema, {
      type: EventType.CHECK_RESULT,
      at: plus(800),
      check: { name: "version.major", status: CheckStatus.PASS, message: "same major version" },
    }),
    create(MigrationEventSchema, { type: EventType.PHASE_CHANGED, at: plus(900) }),
    create(MigrationEventSchema, {
      type: EventType.CHECK_RESULT,
      at: plus(4000),
      check: { name: "slots.inactive_logical", status: CheckStatus.FAIL, message: "1 inactive slot" },
    }),
  ];

  it("shows the phase timeline with durations, the lag window filling, lag and WAL rate, and the verdicts in order", () => {
    const text = renderWatch(m, events, { now: new Date(t0.getTime() + 10_000), color: false });
    expect(text).toContain("billing-db: billing -> billing-aurora");
    expect(text).toContain("phase REPLICATING for 7.0 s");
    expect(text).toMatch(/PENDING\s+10:00:00.000 {2}100 ms\n/);
    expect(text).toMatch(/PREFLIGHT\s+10:00:00.100 {2}800 ms\n/);
    expect(text).toMatch(/REPLICATING\s+10:00:03.000 {2}7.0 s {2}<- now\n/);
    expect(text).toContain(`lag window ${bar(0.5)} 2.5 s of 5.0 s under the thresholds`);
    expect(text).toContain("lag 12.0 KiB / 20 ms   WAL rate 42.0 KiB/s   replica streaming   (sampled 500 ms ago)");
    const v = text.slice(text.indexOf("verdicts"));
    expect(v.indexOf("version.major")).toBeLessThan(v.indexOf("slots.inactive_logical"));
    expect(v).toContain("FAIL  slots.inactive_logical");
    expect(text).not.toContain("\x1b[");
  });

  it("colours verdicts on a terminal, and ends the timeline at a final phase", () => {
    expect(renderWatch(m, events, { now: t0, color: true })).toContain("\x1b[31mFAIL\x1b[0m");
    const done = create(MigrationSchema, {
      ...m,
      phase: Phase.ROLLED_BACK,
      history: [
        ...m.history,
        create(PhaseTransitionSchema, { from: Phase.REPLICATING, to: Phase.ROLLED_BACK, at: plus(9000) }),
      ],
    });
    const text = renderWatch(done, [], { now: new Date(t0.getTime() + 60_000), color: false });
    expect(text).toMatch(/REPLICATING\s+10:00:03.000 {2}6.0 s\n/);
    expect(text).toMatch(/ROLLED_BACK\s+10:00:09.000 {2}\n/);
    expect(text).not.toContain("<- now");
    expect(text).not.toContain("lag window");
    expect(text).toContain("none yet");
  });

  it("bar fills proportionally and clamps", () => {
    expect(bar(0, 4)).toBe("[----]");
    expect(bar(0.5, 4)).toBe("[##--]");
    expect(bar(2, 4)).toBe("[####]");
  });
});
