import { createHash } from "node:crypto";
import {
  jsonBody,
  kindOfPhase,
  MAX_ATTEMPTS,
  retryDelayMs,
  slackBody,
  type Notice,
  type NotificationKind,
} from "../domain/notification.js";
import type { PhaseName } from "../domain/phases.js";
import type { CampaignRepo } from "../store/campaign-repo.js";
import type { EventBus } from "../store/event-bus.js";
import type { Leases } from "../store/leases.js";
import type { NewNotification, NotificationRepo, NotificationRow } from "../store/notification-repo.js";
import type { Logger } from "../telemetry/log.js";
import { WakeLoop } from "../support/wake-loop.js";
import type { TeamHooks, Webhook } from "./hooks-file.js";
import { deliver } from "./webhook.js";

export interface NotifierDeps {
  notifications: NotificationRepo;
  campaigns: CampaignRepo;
  leases: Leases;
  bus: EventBus;
  hooks: () => TeamHooks;
  log: Logger;
  /** How often due retries are looked for besides the wake-ups events give. */
  intervalMs: number;
}

const PHASES: PhaseName[] = ["READY_FOR_CUTOVER", "QUIESCING", "COMPLETED", "ROLLING_BACK", "ROLLED_BACK", "FAILED"];
const LEASE = "pgshift:notifier";
const BATCH = 500;

/** The key a webhook is known by in the store: a digest, since the URL itself can be a secret (Slack's are). */
export const hookKey = (url: string) => createHash("sha256").update(url).digest("hex").slice(0, 16);

/**
 * Tells owning teams what happens to their databases: one replica at a time (a lease) scans the event logs, queues a
 * notification per event and webhook in the store's outbox (once, whoever scans), POSTs each signed, retries with
 * backoff, and records every outcome in the migration's or campaign's own log. Nothing here is on the engine's path:
 * a slow or dead receiver delays only its own notices.
 */
export class Notifier {
  private readonly loop: WakeLoop;

  constructor(private readonly deps: NotifierDeps) {
    this.loop = new WakeLoop(
      () => this.tick(),
      deps.intervalMs,
      (e) => deps.log.error("notifying failed; will try again", { error: e.message }),
    );
  }

  start(): void {
    this.loop.start([(w) => this.deps.bus.subscribeAll(w), (w) => this.deps.bus.subscribeCampaign(undefined, w)]);
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  async tick(): Promise<void> {
    if (Object.keys(this.deps.hooks()).length === 0) return;
    if (!(await this.deps.leases.acquire(LEASE))) return;
    await this.queue();
    await this.send();
    await this.record();
  }

  /** Queues what the events since the cursors call for. */
  private async queue(): Promise<void> {
    const { notifications } = this.deps;
    const hooks = this.deps.hooks();
    const forTeam = (team: string | undefined) => (team ? (hooks[team] ?? []) : []);

    const mAfter = await notifications.cursor("migration");
    const mEvents = await notifications.migrationEvents(mAfter, PHASES, BATCH);
    const mRows: NewNotification[] = mEvents.flatMap((e) =>
      forTeam(e.team).map((h) =>
        this.row("migration", e.seq, h, e.team!, kindOfPhase(e.phaseTo)!, {
          at: e.at.toISOString(),
          database: e.database,
          migrationId: e.migrationId,
          message: e.message,
          windowMs: e.windowMs,
        }),
      ),
    );
    await notifications.enqueue("migration", await notifications.settled("migration", mEvents, mAfter), mRows);

    const cAfter = await notifications.cursor("campaign");
    const cEvents = await notifications.campaignEvents(cAfter, ["PAUSED"], BATCH);
    const cRows: NewNotification[] = cEvents.flatMap((e) =>
      (e.teams ?? []).flatMap((team) =>
        forTeam(team).map((h) =>
          this.row("campaign", e.seq, h, team, "campaign_paused", {
            at: e.at.toISOString(),
            campaignId: e.campaignId,
            campaignName: e.campaignName,
            message: e.message,
          }),
        ),
      ),
    );
    await notifications.enqueue("campaign", await notifications.settled("campaign", cEvents, cAfter), cRows);
  }

  private row(
    source: "migration" | "campaign",
    seq: string,
    hook: Webhook,
    team: string,
    kind: NotificationKind,
    rest: Omit<Notice, "id" | "kind" | "team">,
  ): NewNotification {
    const key = hookKey(hook.url);
    const notice: Notice = { id: `${source}-${seq}-${key}`, kind, team, ...rest };
    return {
      source,
      eventSeq: seq,
      hookKey: key,
      team,
      kind,
      migrationId: rest.migrationId,
      campaignId: rest.campaignId,
      notice: notice as unknown as Record<string, unknown>,
    };
  }

  /** POSTs what is due, each signed; a failure is retried later with a longer wait, then given up on. */
  private async send(): Promise<void> {
    const { notifications, log } = this.deps;
    const byKey = new Map(
      Object.values(this.deps.hooks())
        .flat()
        .map((h) => [hookKey(h.url), h]),
    );
    const due = await notifications.due(20);
    await Promise.all(
      due.map(async (n) => {
        const hook = byKey.get(n.hook_key);
        if (!hook) {
          await notifications.attempted(n.id, { delivered: false, error: "the webhook is no longer configured" });
          return;
        }
        const notice = n.notice as unknown as Notice;
        const error = await deliver(hook, notice.id, hook.format === "slack" ? slackBody(notice) : jsonBody(notice));
        if (!error) return notifications.attempted(n.id, { delivered: true });
        const attempts = n.attempts + 1;
        log.warn("a webhook refused or missed a notification", { team: n.team, kind: n.kind, attempts, error });
        await notifications.attempted(
          n.id,
          attempts >= MAX_ATTEMPTS
            ? { delivered: false, error }
            : { delivered: false, error, retryInMs: retryDelayMs(attempts) },
        );
      }),
    );
  }

  /** Puts each outcome in the log of the migration or campaign it was about. */
  private async record(): Promise<void> {
    const { notifications, campaigns } = this.deps;
    for (const n of await notifications.unrecorded(50)) {
      const what = `team ${n.team} ${n.status === "delivered" ? "notified" : "could not be notified"} of ${n.kind}${n.status === "delivered" ? "" : `: ${n.last_error} after ${n.attempts} attempts`}`;
      if (n.migration_id) await notifications.recordOnMigration(n as NotificationRow, what);
      else if (n.campaign_id) {
        await campaigns.log(n.campaign_id, "NOTIFIED", "pgshift", what, {
          kind: n.kind,
          team: n.team,
          status: n.status,
        });
        await notifications.markRecorded(n.id);
      }
    }
  }
}
