import type { PhaseName } from "./phases.js";

/** What a team is told of: the phase changes that matter to the people who own a database, and a campaign's pause. */
export type NotificationKind =
  | "ready_for_cutover"
  | "cutover_started"
  | "cutover_done"
  | "rollback_started"
  | "rolled_back"
  | "failed"
  | "campaign_paused";

const ON_PHASE: Partial<Record<PhaseName, NotificationKind>> = {
  READY_FOR_CUTOVER: "ready_for_cutover",
  QUIESCING: "cutover_started",
  COMPLETED: "cutover_done",
  ROLLING_BACK: "rollback_started",
  ROLLED_BACK: "rolled_back",
  FAILED: "failed",
};

/** The notification a migration's phase change gives, if any. */
export function kindOfPhase(to: PhaseName | null | undefined): NotificationKind | undefined {
  return to ? ON_PHASE[to] : undefined;
}

/** What a notification says, whatever the format it is sent in. */
export interface Notice {
  /** Unique per event and webhook: receivers drop a repeat by it. */
  id: string;
  kind: NotificationKind;
  team: string;
  at: string;
  database?: string;
  migrationId?: string;
  campaignId?: string;
  campaignName?: string;
  /** The event's own words, e.g. why a campaign paused or why a migration failed. */
  message: string;
  /** cutover_done: the write-unavailability window the engine measured. */
  windowMs?: number;
}

const HEADLINE: Record<NotificationKind, (n: Notice) => string> = {
  ready_for_cutover: (n) => `${n.database}: ready for cutover (migration ${n.migrationId})`,
  cutover_started: (n) => `${n.database}: cutover started; writes pause briefly`,
  cutover_done: (n) =>
    `${n.database}: cutover done${n.windowMs !== undefined ? `, writes were refused for ${n.windowMs} ms` : ""}`,
  rollback_started: (n) => `${n.database}: rolling back to the source`,
  rolled_back: (n) => `${n.database}: rolled back; traffic is on the source again`,
  failed: (n) => `${n.database}: migration ${n.migrationId} failed`,
  campaign_paused: (n) => `campaign ${n.campaignName}: paused`,
};

/** The generic JSON body: every field, for machines. */
export function jsonBody(n: Notice): string {
  return JSON.stringify({ ...n, summary: HEADLINE[n.kind](n) });
}

/** A Slack-compatible body (an incoming webhook's `text`). */
export function slackBody(n: Notice): string {
  return JSON.stringify({ text: `*pgshift* ${HEADLINE[n.kind](n)}${n.message ? `: ${n.message}` : ""}` });
}

/** Seconds before attempt n+1 (n from 1): doubling from 1 s, at most 5 minutes. */
export function retryDelayMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.max(0, attempts - 1));
}

export const MAX_ATTEMPTS = 10;
