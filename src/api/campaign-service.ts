import { randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { assignWaves, planCampaign, tally, type Plan } from "../domain/campaign.js";
import {
  campaignRules,
  campaignSpecFromJson,
  campaignSpecToJson,
  migrationSpecFor,
  normalizeCampaignSpec,
  targetFor,
  type SelectedDatabase,
} from "../domain/campaign-spec.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError } from "../domain/errors.js";
import { ownershipKey } from "../domain/inventory.js";
import { phaseToProto } from "../domain/phases.js";
import { ProviderKind, specFromJson, specToJson } from "../domain/spec.js";
import {
  CampaignSchema,
  CampaignState,
  WaveState,
  type Campaign,
  type CampaignService,
  type CampaignSpec,
} from "../gen/migration/v1/campaign_pb.js";
import type { Action } from "../security/policy.js";
import { progressOf, type CampaignItemRow, type CampaignRepo, type CampaignRow } from "../store/campaign-repo.js";
import type { DatabaseRepo, DatabaseRow } from "../store/database-repo.js";
import type { EventBus } from "../store/event-bus.js";
import { linkedSignal } from "../support/linked-signal.js";
import type { Authorizer } from "./authorize.js";
import { actorOf, approverOf } from "./caller.js";
import { wakeup } from "./watch-wakeup.js";

export interface CampaignServiceDeps {
  campaigns: CampaignRepo;
  databases: DatabaseRepo;
  authz: Authorizer;
  bus: EventBus;
  providerAvailable: (p: ProviderKind) => string | undefined;
  defaultRegion: string | undefined;
  shutdown: AbortSignal;
}

const MAX_PAGE = 200;
const DEFAULT_PAGE = 50;
const WATCH_POLL_MS = 5_000;
const MAX_DATABASES = 1000;

function requireId(id: string): string {
  if (!id) throw new InvalidArgumentError("id is required: the campaign id that CreateCampaign returned");
  if (id.length > 64) throw new InvalidArgumentError(`id "${id.slice(0, 64)}…" is too long to be a campaign id`);
  return id;
}

/** The campaign as the API shows it: its rows, and where its migrations stand as the planner sees it now. */
export function campaignToProto(row: CampaignRow, items: CampaignItemRow[], now = new Date()): Campaign {
  const spec = campaignSpecFromJson(row.spec);
  const plan: Plan = planCampaign(campaignRules(spec), progressOf(row), items, now);
  const phases: Record<string, number> = {};
  const byWave = new Map<number, Record<string, number>>();
  for (const it of items) {
    const p = it.phase ?? "NOT_STARTED";
    phases[p] = (phases[p] ?? 0) + 1;
    const w = byWave.get(it.wave) ?? {};
    w[p] = (w[p] ?? 0) + 1;
    byWave.set(it.wave, w);
  }
  return create(CampaignSchema, {
    id: row.id,
    spec,
    state: CampaignState[row.state],
    pauseReason: row.pause_reason,
    items: items.map((it) => {
      const s = specFromJson(it.spec);
      return {
        databaseName: it.database,
        team: it.team,
        wave: it.wave,
        source: s.source,
        target: s.target,
        migrationId: it.migrationId ?? "",
        phase: it.phase ? phaseToProto(it.phase) : 0,
        waitingFor: plan.waiting[it.database] ?? "",
      };
    }),
    waves: plan.waves.map((w) => ({
      index: w.index,
      state: WaveState[w.state],
      size: w.size,
      phases: byWave.get(w.index) ?? {},
      approvedBy: row.approvals[String(w.index)] ?? [],
    })),
    phases,
    eta: plan.etaMs !== undefined ? durationFromMs(Math.round(plan.etaMs)) : undefined,
    createdBy: row.created_by,
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
  });
}

export function campaignService(deps: CampaignServiceDeps): ServiceImpl<typeof CampaignService> {
  const { campaigns, databases, authz, bus, shutdown } = deps;

  async function allowed(ctx: HandlerContext, id: string, action: Action, what: string) {
    const row = await campaigns.get(requireId(id));
    const items = await campaigns.items(row.id);
    // The action on every database of the campaign: a campaign over several teams needs a role covering all of them.
    await authz.requireAll(
      ctx,
      action,
      items.map((i) => i.database),
      `${what} campaign ${row.id}`,
    );
    return { row, items };
  }

  async function shown(id: string) {
    const row = await campaigns.get(id);
    return campaignToProto(row, await campaigns.items(id));
  }

  /** The registered databases a spec selects: those named (each must be registered), then those its labels match. */
  async function select(spec: CampaignSpec): Promise<DatabaseRow[]> {
    const out = new Map<string, DatabaseRow>();
    for (const name of spec.select!.names) {
      const row = await databases.get(name);
      if (!row)
        throw new FailedPreconditionError(
          `spec.select.names holds "${name}", which is not registered; an admin registers it with RegisterDatabase (pgshift ctl register)`,
        );
      out.set(name, row);
    }
    const { team, ...labels } = spec.select!.labels;
    if (team !== undefined || Object.keys(labels).length > 0) {
      let pageToken: string | undefined;
      do {
        const page = await databases.list({ team, labels, pageSize: 500, pageToken });
        for (const r of page.rows) if (!out.has(r.name)) out.set(r.name, r);
        if (out.size > MAX_DATABASES)
          throw new InvalidArgumentError(`spec.select matches more than ${MAX_DATABASES} databases; narrow it`);
        pageToken = page.nextPageToken || undefined;
      } while (pageToken);
    }
    if (out.size === 0)
      throw new FailedPreconditionError("spec.select matches no registered database; ListDatabases shows them");
    return [...out.values()];
  }

  async function act(
    ctx: HandlerContext,
    req: { id: string; reason: string },
    action: Action,
    what: string,
    change: (row: CampaignRow, items: CampaignItemRow[], actor: string) => Promise<unknown>,
  ) {
    if (req.reason.length > 1000) throw new InvalidArgumentError("reason must be at most 1000 characters");
    const { row, items } = await allowed(ctx, req.id, action, what);
    await change(row, items, actorOf(ctx));
    return { campaign: await shown(row.id) };
  }

  return {
    async createCampaign(req, ctx) {
      const actor = actorOf(ctx);
      if (req.requestId.length > 128) throw new InvalidArgumentError("request_id must be at most 128 characters");
      const spec = normalizeCampaignSpec(req.spec);
      const selected = await select(spec);
      // The campaign approves each cutover itself: creating one is an approver's act on every database in it.
      await authz.requireAll(
        ctx,
        "approve",
        selected.map((d) => d.name),
        "create a campaign (which approves cutovers) over",
      );
      const waves = assignWaves(selected.length, spec.waveSizes);
      const items = [];
      for (const [k, d] of selected.entries()) {
        const db: SelectedDatabase = {
          name: d.name,
          team: d.team,
          provider: d.provider === "aws" ? ProviderKind.AWS : ProviderKind.LOCAL,
          instances: d.instances,
        };
        const unavailable = deps.providerAvailable(db.provider);
        if (unavailable) throw new FailedPreconditionError(`database "${d.name}": ${unavailable}`);
        const target = targetFor(spec, db);
        const mspec = migrationSpecFor(spec, db, target);
        const owner = await databases.ownerOf(ownershipKey(db.provider, target, deps.defaultRegion));
        if (owner)
          throw new FailedPreconditionError(
            `the target ${target.id} of database "${d.name}" is an instance of database "${owner}"; a campaign's targets are new instances`,
          );
        items.push({ database: d.name, team: d.team, wave: waves[k]!, spec: specToJson(mspec) });
      }
      const targets = items.map((i) => specFromJson(i.spec).target!.id);
      const twice = targets.find((t, i) => targets.indexOf(t) !== i);
      if (twice)
        throw new InvalidArgumentError(
          `spec.targets gives two databases the same target "${twice}"; give each its own`,
        );
      const { row, created } = await campaigns.create({
        id: randomUUID(),
        requestId: req.requestId || null,
        name: spec.name,
        spec: campaignSpecToJson(spec) as object,
        teams: [...new Set(items.map((i) => i.team))].sort(),
        actor,
        items,
      });
      return { campaign: await shown(row.id), created };
    },

    async getCampaign(req, ctx) {
      const { row, items } = await allowed(ctx, req.id, "view", "read");
      return { campaign: campaignToProto(row, items) };
    },

    async listCampaigns(req, ctx) {
      if (req.pageSize > MAX_PAGE)
        throw new InvalidArgumentError(`page_size must be at most ${MAX_PAGE}; got ${req.pageSize}`);
      const { rows, nextPageToken } = await campaigns.list(req.pageSize || DEFAULT_PAGE, req.pageToken || undefined);
      const out: Campaign[] = [];
      for (const row of rows) {
        const items = await campaigns.items(row.id);
        // Only campaigns every database of which the caller may view; a page can come back short.
        const may = await authz.viewable(
          ctx,
          items.map((i) => i.database),
        );
        if (items.every((i) => may(i.database))) out.push(campaignToProto(row, items));
      }
      return { campaigns: out, nextPageToken };
    },

    async *watchCampaign(req, ctx) {
      const { row } = await allowed(ctx, req.id, "view", "watch");
      let last = "";
      const woke = { signalled: false };
      const fn = () => (woke.signalled = true);
      // Its own changes, and any migration's (its migrations' phases are part of it).
      const unsubscribe = [bus.subscribeCampaign(row.id, fn), bus.subscribeAll(fn)];
      const linked = linkedSignal(ctx.signal, shutdown);
      try {
        while (!ctx.signal.aborted) {
          if (shutdown.aborted) throw new UnavailableError("the service is shutting down; watch again to continue");
          woke.signalled = false;
          const campaign = await shown(row.id);
          const bytes = Buffer.from(toBinary(CampaignSchema, { ...campaign, updatedAt: undefined })).toString("base64");
          if (bytes !== last) {
            last = bytes;
            yield { campaign };
          }
          if (campaign.state === CampaignState.COMPLETED || campaign.state === CampaignState.CANCELLED) return;
          if (!woke.signalled) await wakeup(linked.signal, WATCH_POLL_MS, (f) => bus.subscribeCampaign(row.id, f));
        }
      } finally {
        linked.dispose();
        for (const u of unsubscribe) u();
      }
    },

    pauseCampaign: (req, ctx) =>
      act(ctx, req, "operate", "pause", (row, _items, actor) =>
        campaigns.setState(row.id, "PAUSED", ["RUNNING"], actor, req.reason || "paused", {
          pauseReason: `paused by ${actor}${req.reason ? `: ${req.reason}` : ""}`,
        }),
      ),

    // Resuming lets cutovers be approved again: an approver's act. The failures and rollbacks it saw no longer count.
    resumeCampaign: (req, ctx) =>
      act(ctx, req, "approve", "resume", async (row, items, actor) => {
        const { failures, rollbacks } = tally(items);
        await campaigns.setState(row.id, "RUNNING", ["PAUSED"], actor, req.reason || "resumed", {
          failuresSeen: failures,
          rollbacksSeen: rollbacks,
        });
      }),

    cancelCampaign: (req, ctx) =>
      act(ctx, req, "operate", "cancel", (row, _items, actor) =>
        campaigns.setState(row.id, "CANCELLED", ["RUNNING", "PAUSED"], actor, req.reason || "cancelled"),
      ),

    approveWave: (req, ctx) =>
      act(ctx, req, "approve", `approve wave ${req.wave} of`, async (row, items, actor) => {
        const waves = new Set(items.map((i) => i.wave));
        if (!waves.has(req.wave))
          throw new NotFoundError(`campaign ${row.id} has no wave ${req.wave}; its waves are 0 to ${waves.size - 1}`);
        if (req.wave === 0) throw new FailedPreconditionError("wave 0 starts with the campaign and needs no approval");
        await campaigns.approveWave(row.id, req.wave, approverOf(ctx), req.reason || `approved by ${actor}`);
      }),
  };
}
