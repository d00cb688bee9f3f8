import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import { uniqueViolation } from "./pg-errors.js";
import type { CampaignProgress, CampaignStateName, PlanItem } from "../domain/campaign.js";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import type { PhaseName } from "../domain/phases.js";
import type { SpecJson } from "../domain/state.js";
import { leaseHeld, type Lease } from "./leases.js";
import type { CampaignEventsTable, CampaignsTable, Database } from "./schema.js";

export type CampaignRow = Selectable<CampaignsTable>;
export type CampaignEventRow = Selectable<CampaignEventsTable>;

/** What the planner reads of a campaign's own progress. */
export function progressOf(row: CampaignRow): CampaignProgress {
  return {
    state: row.state,
    approvals: row.approvals,
    failuresSeen: row.failures_seen,
    rollbacksSeen: row.rollbacks_seen,
  };
}

/** A campaign's database with its migration's phase, once it has one. */
export interface CampaignItemRow extends PlanItem {
  ord: number;
  spec: SpecJson;
}

export interface NewCampaign {
  id: string;
  requestId: string | null;
  name: string;
  spec: unknown;
  teams: string[];
  actor: string;
  items: { database: string; team: string; wave: number; spec: SpecJson }[];
}

const FINAL: CampaignStateName[] = ["COMPLETED", "CANCELLED"];

/** Campaigns, their databases and their own event log. Where their migrations stand is read from the migrations. */
export class CampaignRepo {
  constructor(private readonly db: Kysely<Database>) {}

  /** Creates a campaign, its items and a CREATED event at once; a request_id seen before returns what it made. */
  async create(c: NewCampaign): Promise<{ row: CampaignRow; created: boolean }> {
    const prior = c.requestId ? await this.byRequestId(c.requestId) : undefined;
    if (prior) return { row: prior, created: false };
    try {
      const row = await this.db.transaction().execute(async (trx) => {
        const row = await trx
          .insertInto("campaigns")
          .values({
            id: c.id,
            request_id: c.requestId,
            name: c.name,
            spec: JSON.stringify(c.spec),
            state: "RUNNING",
            approvals: JSON.stringify({}),
            teams: JSON.stringify(c.teams),
            created_by: c.actor,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await trx
          .insertInto("campaign_items")
          .values(
            c.items.map((it, ord) => ({
              campaign_id: c.id,
              database_name: it.database,
              ord,
              wave: it.wave,
              team: it.team,
              spec: JSON.stringify(it.spec),
            })),
          )
          .execute();
        await this.event(trx, c.id, "CREATED", c.actor, `campaign ${c.name} created with ${c.items.length} databases`);
        return row;
      });
      return { row, created: true };
    } catch (e) {
      const constraint = uniqueViolation(e);
      if (constraint === "campaigns_request_id" && c.requestId) {
        const again = await this.byRequestId(c.requestId);
        if (again) return { row: again, created: false };
      }
      if (constraint === "campaign_items_active") {
        const taken = await this.db
          .selectFrom("campaign_items")
          .innerJoin("campaigns", "campaigns.id", "campaign_items.campaign_id")
          .select(["campaign_items.database_name", "campaigns.id", "campaigns.name"])
          .where("campaign_items.active", "=", true)
          .where(
            "campaign_items.database_name",
            "in",
            c.items.map((i) => i.database),
          )
          .executeTakeFirst();
        throw new FailedPreconditionError(
          taken
            ? `database "${taken.database_name}" is already in campaign ${taken.name} (${taken.id}), which is running or paused; cancel it or leave the database out`
            : "a selected database is already in a running or paused campaign",
        );
      }
      throw e;
    }
  }

  private byRequestId(requestId: string): Promise<CampaignRow | undefined> {
    return this.db.selectFrom("campaigns").selectAll().where("request_id", "=", requestId).executeTakeFirst();
  }

  async get(id: string): Promise<CampaignRow> {
    const row = await this.db.selectFrom("campaigns").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw new NotFoundError(`no campaign with id "${id}"; ListCampaigns shows the existing ones`);
    return row;
  }

  /** Its databases in campaign order, each with its migration's phase and times. */
  async items(campaignId: string): Promise<CampaignItemRow[]> {
    const r = await sql<{
      database_name: string;
      ord: number;
      wave: number;
      team: string;
      spec: SpecJson;
      migration_id: string | null;
      phase: PhaseName | null;
      cutover_approved: boolean | null;
      created_at: Date | null;
      completed_at: Date | null;
    }>`
      select ci.database_name, ci.ord, ci.wave, ci.team, ci.spec, ci.migration_id,
             m.phase, m.cutover_approved, m.created_at,
             (select min(e.at) from events e where e.migration_id = m.id and e.phase_to = 'COMPLETED') as completed_at
        from campaign_items ci left join migrations m on m.id = ci.migration_id
       where ci.campaign_id = ${campaignId}
       order by ci.ord`.execute(this.db);
    return r.rows.map((x) => ({
      database: x.database_name,
      ord: x.ord,
      wave: x.wave,
      team: x.team,
      spec: x.spec,
      migrationId: x.migration_id ?? undefined,
      phase: x.phase ?? undefined,
      cutoverApproved: x.cutover_approved ?? undefined,
      createdAt: x.created_at ?? undefined,
      completedAt: x.completed_at ?? undefined,
    }));
  }

  /** Newest first. */
  async list(pageSize: number, pageToken?: string): Promise<{ rows: CampaignRow[]; nextPageToken: string }> {
    let q = this.db.selectFrom("campaigns").selectAll().orderBy("created_at", "desc").orderBy("id", "desc");
    if (pageToken) {
      const [at, id] = Buffer.from(pageToken, "base64url").toString("utf8").split("|");
      const when = new Date(at ?? "");
      if (!id || Number.isNaN(when.getTime()))
        throw new InvalidArgumentError(
          "page_token is not one this service issued; pass the next_page_token of a previous ListCampaigns response",
        );
      q = q.where((eb) =>
        eb.or([eb("created_at", "<", when), eb.and([eb("created_at", "=", when), eb("id", "<", id)])]),
      );
    }
    const rows = await q.limit(pageSize + 1).execute();
    const more = rows.length > pageSize;
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    return {
      rows: page,
      nextPageToken:
        more && last ? Buffer.from(`${last.created_at.toISOString()}|${last.id}`).toString("base64url") : "",
    };
  }

  /** Campaigns that still have work: running or paused. */
  async activeIds(): Promise<string[]> {
    const rows = await this.db.selectFrom("campaigns").select("id").where("state", "not in", FINAL).execute();
    return rows.map((r) => r.id);
  }

  /** Records the migration made for a database, while the lease is held; false when it already had one. */
  async setMigration(lease: Lease, campaignId: string, database: string, migrationId: string): Promise<boolean> {
    const r = await this.db
      .updateTable("campaign_items")
      .set({ migration_id: migrationId })
      .where("campaign_id", "=", campaignId)
      .where("database_name", "=", database)
      .where("migration_id", "is", null)
      .where(() => leaseHeld(lease))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /**
   * Moves a campaign to another state with who asked and why. `from` lists the states it may leave (FAILED_PRECONDITION
   * otherwise, naming the state it is in); a final state frees its databases for another campaign.
   */
  async setState(
    id: string,
    to: CampaignStateName,
    from: CampaignStateName[],
    actor: string,
    message: string,
    extra: { pauseReason?: string; failuresSeen?: number; rollbacksSeen?: number } = {},
    lease?: Lease,
  ): Promise<CampaignRow> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom("campaigns").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
      if (!row) throw new NotFoundError(`no campaign with id "${id}"; ListCampaigns shows the existing ones`);
      if (row.state === to) return row;
      if (!from.includes(row.state))
        throw new FailedPreconditionError(
          `campaign ${id} is ${row.state}; it can become ${to} only from ${from.join(" or ")}`,
        );
      if (lease) {
        const held = await sql<{ ok: boolean }>`select ${leaseHeld(lease)} as ok`.execute(trx);
        if (!held.rows[0]?.ok) return row;
      }
      const updated = await trx
        .updateTable("campaigns")
        .set({
          state: to,
          pause_reason: to === "PAUSED" ? (extra.pauseReason ?? "") : "",
          ...(extra.failuresSeen !== undefined ? { failures_seen: extra.failuresSeen } : {}),
          ...(extra.rollbacksSeen !== undefined ? { rollbacks_seen: extra.rollbacksSeen } : {}),
          updated_at: new Date(),
        })
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirstOrThrow();
      if (FINAL.includes(to))
        await trx.updateTable("campaign_items").set({ active: false }).where("campaign_id", "=", id).execute();
      await this.event(trx, id, to, actor, message);
      return updated;
    });
  }

  /** Records an identity's approval of a wave (a repeat by the same identity changes nothing). */
  async approveWave(id: string, wave: number, actor: string, reason: string): Promise<CampaignRow> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom("campaigns").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
      if (!row) throw new NotFoundError(`no campaign with id "${id}"; ListCampaigns shows the existing ones`);
      if (FINAL.includes(row.state))
        throw new FailedPreconditionError(`campaign ${id} is ${row.state}: there is no wave left to approve`);
      const who = row.approvals[String(wave)] ?? [];
      if (who.includes(actor)) return row;
      const approvals = { ...row.approvals, [String(wave)]: [...who, actor] };
      const updated = await trx
        .updateTable("campaigns")
        .set({ approvals: JSON.stringify(approvals), updated_at: new Date() })
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.event(trx, id, "WAVE_APPROVED", actor, reason ? `wave ${wave}: ${reason}` : `wave ${wave}`, { wave });
      return updated;
    });
  }

  /** Appends to the campaign's own log (what it created and approved, and why it paused). */
  log(campaignId: string, type: string, actor: string, message: string, payload: Record<string, unknown> = {}) {
    return this.event(this.db, campaignId, type, actor, message, payload);
  }

  private async event(
    trx: Transaction<Database> | Kysely<Database>,
    campaignId: string,
    type: string,
    actor: string,
    message: string,
    payload: Record<string, unknown> = {},
  ): Promise<void> {
    await trx
      .insertInto("campaign_events")
      .values({ campaign_id: campaignId, type, actor, message, payload: JSON.stringify(payload) })
      .execute();
    // Watchers of the campaign hear it on the migrations' channel's sibling.
    await sql`select pg_notify('pgshift_campaigns', ${campaignId})`.execute(trx);
  }

  async events(campaignId: string): Promise<CampaignEventRow[]> {
    return this.db
      .selectFrom("campaign_events")
      .selectAll()
      .where("campaign_id", "=", campaignId)
      .orderBy("seq")
      .execute();
  }

  /** The campaign a migration was made by, if any. */
  async ofMigration(migrationId: string): Promise<string | undefined> {
    const r = await this.db
      .selectFrom("campaign_items")
      .select("campaign_id")
      .where("migration_id", "=", migrationId)
      .executeTakeFirst();
    return r?.campaign_id;
  }
}
