import { InvalidArgumentError } from "./errors.js";
import type { PhaseName } from "./phases.js";
import { CUTOVER_WINDOW } from "./transitions.js";

/** A weekly range in a time zone, in seconds from local midnight; end <= start runs past midnight. */
export interface ChangeWindow {
  /** 0 = Sunday … 6 = Saturday; all seven when the spec named none. */
  days: number[];
  start: number;
  end: number;
  timeZone: string;
}

export interface CampaignRules {
  waveSizes: number[];
  approveEveryWave: boolean;
  maxReplicating: number;
  maxCutovers: number;
  windows: ChangeWindow[];
  teamWindows: Record<string, ChangeWindow[]>;
  maxFailures: number;
  continueAfterRollback: boolean;
  maxFailureRate: number;
  minFinishedForRate: number;
  twoPersonApproval: boolean;
}

export type CampaignStateName = "RUNNING" | "PAUSED" | "COMPLETED" | "CANCELLED";

/** What the store keeps of a campaign's own progress (the rest is its migrations' phases). */
export interface CampaignProgress {
  state: CampaignStateName;
  /** Identities that approved each wave, by wave index. */
  approvals: Record<string, string[]>;
  /** Failures and rollbacks present when it was last resumed: the stop conditions count those after. */
  failuresSeen: number;
  rollbacksSeen: number;
}

/** One database of a campaign, with its migration's phase once it has one. */
export interface PlanItem {
  database: string;
  team: string;
  wave: number;
  migrationId?: string;
  phase?: PhaseName;
  cutoverApproved?: boolean;
  /** When its migration was created and reached COMPLETED, for the ETA. */
  createdAt?: Date;
  completedAt?: Date;
}

export type Decision =
  | { kind: "create"; database: string }
  | { kind: "approve"; database: string; migrationId: string }
  | { kind: "pause"; reason: string }
  | { kind: "complete" };

export type WaveStateName = "WAITING" | "AWAITING_APPROVAL" | "RUNNING" | "DONE";

export interface Plan {
  decisions: Decision[];
  waves: { index: number; state: WaveStateName; size: number }[];
  /** Why a database waits, when it does. */
  waiting: Record<string, string>;
  failures: number;
  rollbacks: number;
  etaMs?: number;
}

type Stage = "not_started" | "before_cutover" | "cutting_over" | "succeeded" | "rolled_back" | "failed";

/** From the fence until verified, and a rollback: a cutover in progress. */
const CUTTING_OVER: readonly PhaseName[] = [...CUTOVER_WINDOW, "VERIFYING", "ROLLING_BACK"];

/** Where an item stands for the campaign: approval counts as a cutover started, so two replicas never over-approve. */
export function stageOf(i: PlanItem): Stage {
  if (!i.migrationId || !i.phase) return "not_started";
  if (i.phase === "COMPLETED" || i.phase === "FINALIZED") return "succeeded";
  if (i.phase === "ROLLED_BACK" || i.phase === "ROLLING_BACK") return "rolled_back";
  if (i.phase === "FAILED" || i.phase === "ABORTED") return "failed";
  if (CUTTING_OVER.includes(i.phase) || (i.phase === "READY_FOR_CUTOVER" && i.cutoverApproved)) return "cutting_over";
  return "before_cutover";
}

const ended = (s: Stage) => s === "succeeded" || s === "rolled_back" || s === "failed";

/** Failures and rollbacks among the items (a rollback under way counts). */
export function tally(items: PlanItem[]): { failures: number; rollbacks: number } {
  const stages = items.map(stageOf);
  return {
    failures: stages.filter((s) => s === "failed").length,
    rollbacks: stages.filter((s) => s === "rolled_back").length,
  };
}

/** The wave each of n items (in campaign order) falls in: the sizes in order, the last repeating. */
export function assignWaves(n: number, sizes: number[]): number[] {
  const out: number[] = [];
  let wave = 0;
  let left = sizes[0]!;
  for (let i = 0; i < n; i++) {
    if (left === 0) {
      wave++;
      left = sizes[Math.min(wave, sizes.length - 1)]!;
    }
    out.push(wave);
    left--;
  }
  return out;
}

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const weekdayFormat = new Map<string, Intl.DateTimeFormat>();

function localTime(now: Date, timeZone: string): { day: number; seconds: number } {
  let f = weekdayFormat.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      weekday: "short",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    });
    weekdayFormat.set(timeZone, f);
  }
  const parts = Object.fromEntries(f.formatToParts(now).map((p) => [p.type, p.value]));
  return {
    day: DAYS.indexOf(String(parts.weekday).toLowerCase()),
    seconds: Number(parts.hour) * 3600 + Number(parts.minute) * 60 + Number(parts.second),
  };
}

export function windowOpen(w: ChangeWindow, now: Date): boolean {
  const { day, seconds } = localTime(now, w.timeZone);
  const on = (d: number) => w.days.includes(d);
  if (w.start === w.end) return on(day);
  if (w.start < w.end) return on(day) && seconds >= w.start && seconds < w.end;
  // Past midnight: the evening of a listed day, or the small hours after one.
  return (on(day) && seconds >= w.start) || (on((day + 6) % 7) && seconds < w.end);
}

const anyOpen = (ws: ChangeWindow[], now: Date) => ws.length === 0 || ws.some((w) => windowOpen(w, now));

const CLOCK = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/;

/** A spec's window, checked; field names where it sits, for the error. */
export function parseWindow(
  field: string,
  w: { days: string[]; start: string; end: string; timeZone: string },
): ChangeWindow {
  const clock = (name: string, v: string) => {
    const m = CLOCK.exec(v);
    if (!m) throw new InvalidArgumentError(`${field}.${name} "${v.slice(0, 20)}" is not a time: use HH:MM or HH:MM:SS`);
    return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3] ?? 0);
  };
  const days = w.days.map((d) => {
    const i = DAYS.indexOf(d.toLowerCase());
    if (i < 0)
      throw new InvalidArgumentError(`${field}.days holds "${d.slice(0, 20)}": use mon, tue, wed, thu, fri, sat, sun`);
    return i;
  });
  const timeZone = w.timeZone || "UTC";
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
  } catch {
    throw new InvalidArgumentError(
      `${field}.time_zone "${timeZone.slice(0, 60)}" is not a time zone: use an IANA name such as Europe/Berlin`,
    );
  }
  return {
    days: days.length ? [...new Set(days)] : [0, 1, 2, 3, 4, 5, 6],
    start: clock("start", w.start),
    end: clock("end", w.end),
    timeZone,
  };
}

function waveApproved(rules: CampaignRules, p: CampaignProgress, wave: number): boolean {
  const who = new Set(p.approvals[String(wave)] ?? []);
  return who.size >= (rules.twoPersonApproval ? 2 : 1);
}

/**
 * What a campaign does next, from its rules, its own progress and where its migrations stand: which migrations to
 * create and which cutovers to approve (within the limits, the waves and the windows), and whether to pause (a stop
 * condition) or end. Pure: the runner carries the decisions out and plans again.
 */
export function planCampaign(rules: CampaignRules, progress: CampaignProgress, items: PlanItem[], now: Date): Plan {
  const stages = items.map(stageOf);
  const waveCount = items.reduce((m, i) => Math.max(m, i.wave + 1), 0);
  const waves: Plan["waves"] = [];
  for (let w = 0; w < waveCount; w++) {
    const mine = items.map((it, k) => [it, stages[k]!] as const).filter(([it]) => it.wave === w);
    const size = mine.length;
    let state: WaveStateName;
    if (mine.every(([, s]) => ended(s))) state = "DONE";
    else if (w === 0 || mine.some(([, s]) => s !== "not_started")) state = "RUNNING";
    else {
      const prev = waves[w - 1]!;
      const prevClean = items
        .map((it, k) => [it, stages[k]!] as const)
        .filter(([it]) => it.wave === w - 1)
        .every(([, s]) => s === "succeeded");
      if (prev.state !== "DONE") state = "WAITING";
      else if ((prevClean && !rules.approveEveryWave) || waveApproved(rules, progress, w)) state = "RUNNING";
      else state = "AWAITING_APPROVAL";
    }
    waves.push({ index: w, state, size });
  }

  const { failures, rollbacks } = tally(items);
  const decisions: Decision[] = [];
  const waiting: Record<string, string> = {};
  const finished = stages.filter(ended).length;
  const newFailures = failures - progress.failuresSeen;
  const newRollbacks = rollbacks - progress.rollbacksSeen;
  let state = progress.state;
  if (state === "RUNNING") {
    const why =
      newFailures >= rules.maxFailures
        ? `${newFailures} migration(s) failed (stop condition: pause after ${rules.maxFailures})`
        : newRollbacks > 0 && !rules.continueAfterRollback
          ? `${newRollbacks} migration(s) rolled back (stop condition: pause on any rollback)`
          : rules.maxFailureRate > 0 &&
              finished >= rules.minFinishedForRate &&
              failures / finished > rules.maxFailureRate
            ? `${failures} of ${finished} finished migrations failed, above the failure rate of ${rules.maxFailureRate}`
            : undefined;
    if (why) {
      decisions.push({ kind: "pause", reason: why });
      state = "PAUSED";
    }
  }
  if (state === "RUNNING" && finished === items.length) decisions.push({ kind: "complete" });

  let inFlight = stages.filter((s) => s === "before_cutover" || s === "cutting_over").length;
  let cutting = stages.filter((s) => s === "cutting_over").length;
  items.forEach((it, k) => {
    const stage = stages[k]!;
    const wave = waves[it.wave]!;
    if (stage === "not_started") {
      if (state !== "RUNNING") waiting[it.database] = `the campaign is ${state.toLowerCase()}`;
      else if (wave.state === "WAITING") waiting[it.database] = `wave ${it.wave - 1} to finish`;
      else if (wave.state === "AWAITING_APPROVAL") waiting[it.database] = `approval of wave ${it.wave} (ApproveWave)`;
      else if (inFlight >= rules.maxReplicating)
        waiting[it.database] = `a free place: ${inFlight} of ${rules.maxReplicating} migrations in flight`;
      else {
        decisions.push({ kind: "create", database: it.database });
        inFlight++;
      }
    } else if (stage === "before_cutover" && it.phase === "READY_FOR_CUTOVER") {
      if (state !== "RUNNING") waiting[it.database] = `the campaign is ${state.toLowerCase()}`;
      else if (!anyOpen(rules.windows, now)) waiting[it.database] = "the campaign's change windows";
      else if (!anyOpen(rules.teamWindows[it.team] ?? [], now))
        waiting[it.database] = `team ${it.team}'s change windows`;
      else if (cutting >= rules.maxCutovers)
        waiting[it.database] = `a free place: ${cutting} of ${rules.maxCutovers} cutovers in progress`;
      else {
        decisions.push({ kind: "approve", database: it.database, migrationId: it.migrationId! });
        cutting++;
      }
    }
  });

  const durations = items
    .filter((i) => i.createdAt && i.completedAt)
    .map((i) => i.completedAt!.getTime() - i.createdAt!.getTime());
  const remaining = stages.filter((s) => !ended(s)).length;
  const etaMs = durations.length
    ? Math.ceil(remaining / rules.maxReplicating) * (durations.reduce((a, b) => a + b, 0) / durations.length)
    : undefined;
  return { decisions, waves, waiting, failures, rollbacks, etaMs };
}
