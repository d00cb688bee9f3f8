import { ConnectError } from "@connectrpc/connect";
import { planCampaign, type Decision } from "../domain/campaign.js";
import { campaignRules, campaignSpecFromJson } from "../domain/campaign-spec.js";
import { specFromJson } from "../domain/spec.js";
import { progressOf, type CampaignRepo, type CampaignItemRow, type CampaignRow } from "../store/campaign-repo.js";
import type { EventBus } from "../store/event-bus.js";
import type { Lease, Leases } from "../store/leases.js";
import type { MigrationRepo } from "../store/migration-repo.js";
import type { Logger } from "../telemetry/log.js";
import { WakeLoop } from "../support/wake-loop.js";
import { createMigration, type CreateMigrationDeps } from "./create-migration.js";

export interface CampaignRunnerDeps extends CreateMigrationDeps {
  campaigns: CampaignRepo;
  repo: MigrationRepo;
  leases: Leases;
  bus: EventBus;
  log: Logger;
  /** How often every active campaign is looked at besides the wake-ups its migrations' events give. */
  intervalMs: number;
  now?: () => Date;
}

/** The actor a campaign's own acts are recorded under. */
export const campaignActor = (row: Pick<CampaignRow, "name" | "id">) => `campaign:${row.name}`;

/**
 * Carries campaigns out: for each running one whose lease this replica holds (replicas share campaigns through the
 * store), plans from where its migrations stand and does what the plan says. Every act is idempotent (a migration's
 * request id is the campaign's and the database's; approving twice is a retry), so a replica that dies mid-act leaves
 * nothing another cannot finish.
 */
export class CampaignRunner {
  private readonly loop: WakeLoop;
  /** Whether the last look found a campaign to carry out: only then do migrations' events wake it (none in a cutover otherwise). */
  private busy = true;

  constructor(private readonly deps: CampaignRunnerDeps) {
    this.loop = new WakeLoop(
      () => this.tick(),
      deps.intervalMs,
      (e) => deps.log.error("a campaign look failed; will look again", { error: e.message }),
    );
  }

  start(): void {
    this.loop.start([
      (w) => this.deps.bus.subscribeAll(() => this.busy && w()),
      (w) => this.deps.bus.subscribeCampaign(undefined, w),
    ]);
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One look at every active campaign this replica holds (or can take). */
  async tick(): Promise<void> {
    const { campaigns, leases } = this.deps;
    const ids = await campaigns.activeIds();
    this.busy = ids.length > 0;
    for (const id of ids) {
      const lease = await leases.acquire(`pgshift:campaign:${id}`);
      if (!lease) continue;
      try {
        await this.reconcile(id, lease);
      } catch (e) {
        // Said now and tried again on the next look.
        this.deps.log.error("a campaign step failed; will try again", { campaign: id, error: (e as Error).message });
      }
    }
  }

  private async reconcile(id: string, lease: Lease): Promise<void> {
    const { campaigns } = this.deps;
    const row = await campaigns.get(id);
    if (row.state !== "RUNNING" && row.state !== "PAUSED") return;
    const items = await campaigns.items(id);
    const plan = planCampaign(
      campaignRules(campaignSpecFromJson(row.spec)),
      progressOf(row),
      items,
      (this.deps.now ?? (() => new Date()))(),
    );
    for (const d of plan.decisions) {
      const done = await this.carryOut(row, items, d, lease);
      if (!done) return;
    }
  }

  /** Does one decision; false when the campaign stopped (paused, ended) or the lease was lost, so the rest waits. */
  private async carryOut(row: CampaignRow, items: CampaignItemRow[], d: Decision, lease: Lease): Promise<boolean> {
    const { campaigns, repo, log } = this.deps;
    const actor = campaignActor(row);
    switch (d.kind) {
      case "pause":
        log.warn("campaign paused by a stop condition", { campaign: row.id, reason: d.reason });
        await campaigns.setState(row.id, "PAUSED", ["RUNNING"], actor, d.reason, { pauseReason: d.reason }, lease);
        return false;
      case "complete":
        await campaigns.setState(row.id, "COMPLETED", ["RUNNING"], actor, "every migration of it ended", {}, lease);
        return false;
      case "create": {
        const item = items.find((i) => i.database === d.database)!;
        const spec = specFromJson(item.spec);
        let migrationId: string;
        try {
          ({
            row: { id: migrationId },
          } = await createMigration(this.deps, spec, `campaign:${row.id}:${d.database}`, actor));
        } catch (e) {
          const reason = `could not create the migration of ${d.database}: ${ConnectError.from(e).rawMessage}`;
          log.warn("campaign paused: a migration could not be created", { campaign: row.id, reason });
          await campaigns.setState(row.id, "PAUSED", ["RUNNING"], actor, reason, { pauseReason: reason }, lease);
          return false;
        }
        if (!(await campaigns.setMigration(lease, row.id, d.database, migrationId))) return false;
        await campaigns.log(row.id, "MIGRATION_CREATED", actor, `migration of ${d.database} created`, {
          database: d.database,
          migration: migrationId,
        });
        return true;
      }
      case "approve":
        // The lease is renewed by every look; one lost since this plan was made stops here.
        if (!(await this.deps.leases.renew(lease))) return false;
        await repo.requestAction(
          d.migrationId,
          "approve",
          actor,
          `campaign ${row.name}: inside its change windows and limits`,
        );
        await campaigns.log(row.id, "CUTOVER_APPROVED", actor, `cutover of ${d.database} approved`, {
          database: d.database,
          migration: d.migrationId,
        });
        return true;
    }
  }
}
