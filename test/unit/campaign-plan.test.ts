import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  assignWaves,
  parseWindow,
  planCampaign,
  windowOpen,
  type CampaignProgress,
  type CampaignRules,
  type PlanItem,
} from "../../src/domain/campaign.js";
import { normalizeCampaignSpec } from "../../src/domain/campaign-spec.js";
import { CampaignSpecSchema } from "../../src/gen/migration/v1/campaign_pb.js";
import { CutoverMode, MigrationSpecSchema } from "../../src/gen/migration/v1/migration_pb.js";
import type { PhaseName } from "../../src/domain/phases.js";

const rules = (over: Partial<CampaignRules> = {}): CampaignRules => ({
  waveSizes: [1, 2],
  approveEveryWave: false,
  maxReplicating: 2,
  maxCutovers: 1,
  windows: [],
  teamWindows: {},
  maxFailures: 1,
  continueAfterRollback: false,
  maxFailureRate: 0,
  minFinishedForRate: 5,
  twoPersonApproval: false,
  ...over,
});
const running: CampaignProgress = { state: "RUNNING", approvals: {}, failuresSeen: 0, rollbacksSeen: 0 };
const items = (phases: (PhaseName | undefined)[], approved: boolean[] = []): PlanItem[] => {
  const waves = assignWaves(phases.length, [1, 2]);
  return phases.map((phase, i) => ({
    database: `db-${i}`,
    team: i % 2 ? "billing" : "search",
    wave: waves[i]!,
    migrationId: phase ? `m-${i}` : undefined,
    phase,
    cutoverApproved: approved[i] ?? false,
  }));
};
const NOW = new Date("2026-12-07T10:30:00Z"); // a Monday
const kinds = (p: ReturnType<typeof planCampaign>) =>
  p.decisions.map((d) => `${d.kind}:${"database" in d ? d.database : ""}`);

describe("a campaign's plan", () => {
  it("puts the canary alone in the first wave, and the last size repeats", () => {
    expect(assignWaves(6, [1, 2])).toEqual([0, 1, 1, 2, 2, 3]);
    expect(assignWaves(3, [5])).toEqual([0, 0, 0]);
  });

  it("starts only the canary; the next wave waits for it", () => {
    const p = planCampaign(rules(), running, items([undefined, undefined, undefined]), NOW);
    expect(kinds(p)).toEqual(["create:db-0"]);
    expect(p.waiting["db-1"]).toBe("wave 0 to finish");
    expect(p.waves.map((w) => w.state)).toEqual(["RUNNING", "WAITING"]);
  });

  it("starts the next wave once the canary completed, within the in-flight limit", () => {
    const p = planCampaign(rules({ maxReplicating: 1 }), running, items(["COMPLETED", undefined, undefined]), NOW);
    expect(kinds(p)).toEqual(["create:db-1"]);
    expect(p.waiting["db-2"]).toMatch(/1 of 1 migrations in flight/);
  });

  it("approves no more cutovers than the limit, counting an approved one not started yet", () => {
    const p = planCampaign(
      rules(),
      running,
      items(["COMPLETED", "READY_FOR_CUTOVER", "READY_FOR_CUTOVER"], [false, true, false]),
      NOW,
    );
    expect(kinds(p)).toEqual([]);
    expect(p.waiting["db-2"]).toMatch(/1 of 1 cutovers in progress/);
    const q = planCampaign(
      rules({ maxCutovers: 2 }),
      running,
      items(["COMPLETED", "READY_FOR_CUTOVER", "READY_FOR_CUTOVER"], [false, true, false]),
      NOW,
    );
    expect(kinds(q)).toEqual(["approve:db-2"]);
  });

  it("approves no cutover outside the campaign's or the team's windows", () => {
    const closed = parseWindow("w", { days: ["mon"], start: "11:00", end: "12:00", timeZone: "UTC" });
    const open = parseWindow("w", { days: ["mon"], start: "10:00", end: "11:00", timeZone: "UTC" });
    const ready = items(["READY_FOR_CUTOVER"]);
    expect(kinds(planCampaign(rules({ windows: [closed] }), running, ready, NOW))).toEqual([]);
    expect(planCampaign(rules({ windows: [closed] }), running, ready, NOW).waiting["db-0"]).toMatch(/change windows/);
    expect(kinds(planCampaign(rules({ windows: [open] }), running, ready, NOW))).toEqual(["approve:db-0"]);
    expect(kinds(planCampaign(rules({ teamWindows: { search: [closed] } }), running, ready, NOW))).toEqual([]);
    expect(kinds(planCampaign(rules({ teamWindows: { billing: [closed] } }), running, ready, NOW))).toEqual([
      "approve:db-0",
    ]);
  });

  it("pauses on a failure, and not again for the same one after a resume", () => {
    const failed = items(["FAILED", undefined, undefined]);
    const p = planCampaign(rules(), running, failed, NOW);
    expect(p.decisions[0]).toEqual({ kind: "pause", reason: expect.stringMatching(/1 migration\(s\) failed/) });
    expect(kinds(p)).toEqual(["pause:"]);
    // After a resume that saw it, the wave after a failed one waits for approval.
    const resumed = planCampaign(rules(), { ...running, failuresSeen: 1 }, failed, NOW);
    expect(kinds(resumed)).toEqual([]);
    expect(resumed.waves[1]!.state).toBe("AWAITING_APPROVAL");
    const approved = planCampaign(rules(), { ...running, failuresSeen: 1, approvals: { "1": ["alice"] } }, failed, NOW);
    expect(kinds(approved)).toEqual(["create:db-1", "create:db-2"]);
  });

  it("pauses on a rollback unless told to continue, and on a failure rate", () => {
    expect(kinds(planCampaign(rules(), running, items(["ROLLING_BACK"]), NOW))).toEqual(["pause:"]);
    expect(kinds(planCampaign(rules({ continueAfterRollback: true }), running, items(["ROLLED_BACK"]), NOW))).toEqual([
      "complete:",
    ]);
    const five = items(["COMPLETED", "COMPLETED", "FAILED", "COMPLETED", "COMPLETED"]);
    expect(
      kinds(planCampaign(rules({ maxFailures: 9, maxFailureRate: 0.1, minFinishedForRate: 5 }), running, five, NOW)),
    ).toEqual(["pause:"]);
    expect(kinds(planCampaign(rules({ maxFailures: 9, maxFailureRate: 0.3 }), running, five, NOW))).toEqual([
      "complete:",
    ]);
  });

  it("needs two different approvers when the spec says so", () => {
    const p = (who: string[]) =>
      planCampaign(
        rules({ approveEveryWave: true, twoPersonApproval: true }),
        { ...running, approvals: { "1": who } },
        items(["COMPLETED", undefined]),
        NOW,
      );
    expect(p(["alice"]).waves[1]!.state).toBe("AWAITING_APPROVAL");
    expect(kinds(p(["alice", "bob"]))).toEqual(["create:db-1"]);
  });

  it("does nothing new while paused, and estimates what is left from measured durations", () => {
    const it0: PlanItem[] = items(["COMPLETED", undefined, undefined]);
    it0[0]!.createdAt = new Date(NOW.getTime() - 60_000);
    it0[0]!.completedAt = NOW;
    const p = planCampaign(rules(), { ...running, state: "PAUSED" }, it0, NOW);
    expect(kinds(p)).toEqual([]);
    expect(p.waiting["db-1"]).toBe("the campaign is paused");
    expect(p.etaMs).toBe(60_000);
  });
});

describe("change windows", () => {
  it("follow the time zone and run past midnight", () => {
    const berlin = parseWindow("w", { days: ["mon"], start: "11:00", end: "12:00", timeZone: "Europe/Berlin" });
    expect(windowOpen(berlin, NOW)).toBe(true); // 11:30 in Berlin
    const night = parseWindow("w", { days: ["sun"], start: "22:00", end: "02:00", timeZone: "UTC" });
    expect(windowOpen(night, new Date("2026-12-06T23:00:00Z"))).toBe(true);
    expect(windowOpen(night, new Date("2026-12-07T01:59:59Z"))).toBe(true);
    expect(windowOpen(night, new Date("2026-12-07T02:00:00Z"))).toBe(false);
    expect(windowOpen(night, NOW)).toBe(false);
  });

  it("name what is wrong with a bad one", () => {
    expect(() =>
      parseWindow("spec.windows[0]", { days: ["monday"], start: "10:00", end: "11:00", timeZone: "" }),
    ).toThrow(/spec.windows\[0\].days holds "monday"/);
    expect(() => parseWindow("w", { days: [], start: "25:00", end: "11:00", timeZone: "" })).toThrow(
      /w.start "25:00" is not a time/,
    );
    expect(() => parseWindow("w", { days: [], start: "10:00", end: "11:00", timeZone: "Mars/Base" })).toThrow(
      /w.time_zone "Mars\/Base"/,
    );
  });
});

describe("a campaign spec", () => {
  const spec = (over: object = {}) =>
    create(CampaignSpecSchema, {
      name: "fleet",
      select: { labels: { tier: "2" } },
      targets: { idTemplate: "{source}-aurora" },
      ...over,
    });

  it("fills its defaults", () => {
    const s = normalizeCampaignSpec(spec());
    expect([s.waveSizes, s.maxReplicating, s.maxCutovers]).toEqual([[1, 5], 10, 1]);
  });

  it("refuses what the campaign fills itself, and limits out of order", () => {
    expect(() =>
      normalizeCampaignSpec(
        spec({ template: create(MigrationSpecSchema, { cutoverMode: CutoverMode.AUTOMATIC, databaseName: "x" }) }),
      ),
    ).toThrow(/spec.template sets database_name, cutover_mode: the campaign fills those/);
    expect(() => normalizeCampaignSpec(spec({ maxReplicating: 2, maxCutovers: 3 }))).toThrow(
      /max_cutovers \(3\) must be at most/,
    );
    expect(() => normalizeCampaignSpec(spec({ targets: { idTemplate: "aurora" } }))).toThrow(
      /include \{source\} or \{database\}/,
    );
    expect(() => normalizeCampaignSpec(spec({ select: {} }))).toThrow(/spec.select is required/);
  });
});
