import { sql, type Kysely, type Selectable } from "kysely";
import { CUTOVER_WINDOW } from "../domain/transitions.js";
import type { PhaseName } from "../domain/phases.js";
import type { Database, NotificationsTable } from "./schema.js";

export type NotificationRow = Selectable<NotificationsTable>;

/** An event a team may be told of, with what the notice needs. */
export interface NoticeSource {
  seq: string;
  at: Date;
  message: string;
  /** Migration events. */
  migrationId?: string;
  database?: string;
  team?: string;
  phaseTo?: PhaseName;
  windowMs?: number;
  /** Campaign events. */
  campaignId?: string;
  campaignName?: string;
  teams?: string[];
  type?: string;
}

export interface NewNotification {
  source: "migration" | "campaign";
  eventSeq: string;
  hookKey: string;
  team: string;
  kind: string;
  migrationId?: string;
  campaignId?: string;
  notice: Record<string, unknown>;
}

/**
 * How long after an event's insert a later-numbered event may still commit before it: the scan looks again this far
 * back, and the outbox's unique key drops what it queued already.
 */
const SETTLE = "10 seconds";

/** The notification outbox: what is queued per event and webhook, its attempts, and the scan cursors. */
export class NotificationRepo {
  constructor(private readonly db: Kysely<Database>) {}

  async cursor(source: "migration" | "campaign"): Promise<string> {
    const r = await this.db
      .selectFrom("notifier_cursors")
      .select("seq")
      .where("source", "=", source)
      .executeTakeFirst();
    return r?.seq ?? "0";
  }

  /** Phase changes after the cursor that a team hears of, with their database's team. */
  async migrationEvents(after: string, phases: PhaseName[], limit: number): Promise<NoticeSource[]> {
    const r = await sql<{
      seq: string;
      at: Date;
      message: string;
      migration_id: string;
      database_name: string;
      team: string | null;
      phase_to: PhaseName;
      window_ms: string | null;
    }>`
      select e.seq, e.at, e.message, e.migration_id, m.database_name, d.team, e.phase_to,
             m.state->'cutover'->>'windowMs' as window_ms
        from events e join migrations m on m.id = e.migration_id left join databases d on d.name = m.database_name
       where e.seq > ${after} and e.type = 'PHASE_CHANGED' and e.phase_to in (${sql.join(phases)})
       order by e.seq limit ${limit}`.execute(this.db);
    return r.rows.map((x) => ({
      seq: x.seq,
      at: x.at,
      message: x.message,
      migrationId: x.migration_id,
      database: x.database_name,
      team: x.team ?? undefined,
      phaseTo: x.phase_to,
      windowMs: x.phase_to === "COMPLETED" && x.window_ms !== null ? Number(x.window_ms) : undefined,
    }));
  }

  /** A campaign's pauses after the cursor, with its teams. */
  async campaignEvents(after: string, types: string[], limit: number): Promise<NoticeSource[]> {
    const rows = await this.db
      .selectFrom("campaign_events as e")
      .innerJoin("campaigns as c", "c.id", "e.campaign_id")
      .select(["e.seq", "e.at", "e.message", "e.type", "e.campaign_id", "c.name", "c.teams"])
      .where("e.seq", ">", after)
      .where("e.type", "in", types)
      .orderBy("e.seq")
      .limit(limit)
      .execute();
    return rows.map((x) => ({
      seq: x.seq,
      at: x.at,
      message: x.message,
      type: x.type,
      campaignId: x.campaign_id,
      campaignName: x.name,
      teams: x.teams,
    }));
  }

  /** The highest event number safe to move the cursor to: every event numbered below it has committed by now. */
  async settled(source: "migration" | "campaign", seen: NoticeSource[], after: string): Promise<string> {
    const table = source === "migration" ? "events" : "campaign_events";
    const r = await sql<{ seq: string | null }>`
      select max(seq)::text as seq from ${sql.table(table)}
       where seq > ${after} and at < now() - ${SETTLE}::interval`.execute(this.db);
    const limit = r.rows[0]?.seq ?? after;
    // Not past what this scan actually read.
    const last = seen.length ? seen[seen.length - 1]!.seq : after;
    return BigInt(limit) < BigInt(last) ? limit : last;
  }

  /** Queues notifications (once per event and webhook) and moves the cursor, together. */
  async enqueue(source: "migration" | "campaign", cursor: string, rows: NewNotification[]): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      let added = 0;
      if (rows.length) {
        const r = await trx
          .insertInto("notifications")
          .values(
            rows.map((n) => ({
              source: n.source,
              event_seq: n.eventSeq,
              hook_key: n.hookKey,
              team: n.team,
              kind: n.kind,
              migration_id: n.migrationId ?? null,
              campaign_id: n.campaignId ?? null,
              notice: JSON.stringify(n.notice),
            })),
          )
          .onConflict((oc) => oc.constraint("notifications_once").doNothing())
          .executeTakeFirst();
        added = Number(r.numInsertedOrUpdatedRows ?? 0);
      }
      await trx
        .insertInto("notifier_cursors")
        .values({ source, seq: cursor })
        .onConflict((oc) => oc.column("source").doUpdateSet({ seq: cursor }))
        .execute();
      return added;
    });
  }

  due(limit: number): Promise<NotificationRow[]> {
    return this.db
      .selectFrom("notifications")
      .selectAll()
      .where("status", "=", "pending")
      .where("next_at", "<=", sql<Date>`now()`)
      .orderBy("id")
      .limit(limit)
      .execute();
  }

  async attempted(
    id: string,
    outcome: { delivered: true } | { delivered: false; error: string; retryInMs?: number },
  ): Promise<void> {
    await this.db
      .updateTable("notifications")
      .set((eb) => ({
        attempts: eb("attempts", "+", 1),
        ...(outcome.delivered
          ? { status: "delivered", done_at: new Date(), last_error: null }
          : outcome.retryInMs !== undefined
            ? { last_error: outcome.error, next_at: new Date(Date.now() + outcome.retryInMs) }
            : { status: "failed", done_at: new Date(), last_error: outcome.error }),
      }))
      .where("id", "=", id)
      .execute();
  }

  unrecorded(limit: number): Promise<NotificationRow[]> {
    return this.db
      .selectFrom("notifications")
      .selectAll()
      .where("status", "<>", "pending")
      .where("recorded", "=", false)
      .orderBy("id")
      .limit(limit)
      .execute();
  }

  /**
   * Puts a delivery's outcome in its migration's event log: under the migration's row lock (so watchers see events in
   * order), but never waiting for it, and never while writes are stopped: false means "later".
   */
  async recordOnMigration(n: NotificationRow, message: string): Promise<boolean> {
    try {
      return await this.db.transaction().execute(async (trx) => {
        const locked = await sql<{ id: string }>`
          select id from migrations where id = ${n.migration_id} and phase not in (${sql.join([...CUTOVER_WINDOW])})
             for update nowait`.execute(trx);
        if (!locked.rows[0]) return false;
        await trx
          .insertInto("events")
          .values({
            migration_id: n.migration_id!,
            type: "NOTIFICATION",
            actor: "pgshift",
            message,
            phase_from: null,
            phase_to: null,
            payload: JSON.stringify({ notification: n.id, kind: n.kind, team: n.team, status: n.status }),
          })
          .execute();
        await trx.updateTable("notifications").set({ recorded: true }).where("id", "=", n.id).execute();
        return true;
      });
    } catch (e) {
      // 55P03: the engine holds the row this moment; the record waits for the next look.
      if ((e as { code?: string }).code === "55P03") return false;
      throw e;
    }
  }

  async markRecorded(id: string): Promise<void> {
    await this.db.updateTable("notifications").set({ recorded: true }).where("id", "=", id).execute();
  }

  /** What was queued for a migration or campaign, oldest first. */
  of(filter: { migrationId?: string; campaignId?: string }): Promise<NotificationRow[]> {
    let q = this.db.selectFrom("notifications").selectAll();
    if (filter.migrationId) q = q.where("migration_id", "=", filter.migrationId);
    if (filter.campaignId) q = q.where("campaign_id", "=", filter.campaignId);
    return q.orderBy("id").execute();
  }
}
