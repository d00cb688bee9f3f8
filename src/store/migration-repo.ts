import { trace } from "@opentelemetry/api";
import { uniqueViolation } from "./pg-errors.js";
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  LeaseLostError,
  NotFoundError,
} from "../domain/errors.js";
import { leaseHeld, type Lease } from "./leases.js";
import { assertActionAllowed, assertTransition, type OperatorAction } from "../domain/transitions.js";
import { TERMINAL_PHASES, type PhaseName } from "../domain/phases.js";
import { pausedSince, type MigrationStateJson, type RequestedAction, type SpecJson } from "../domain/state.js";
import { drainEstimateMs } from "../domain/rollback-readiness.js";
import type { TelemetrySnapshot } from "../telemetry/metrics.js";
import { newVerdicts, type CheckResult } from "../domain/check.js";
import type { Database, EventsTable, MigrationsTable } from "./schema.js";

export type MigrationRow = Selectable<MigrationsTable>;
export type EventRow = Selectable<EventsTable>;

export interface NewMigration {
  id: string;
  requestId: string | null;
  databaseName: string;
  provider: string;
  sourceKey: string;
  targetKey: string;
  spec: SpecJson;
  actor: string;
}

export interface NewEvent {
  migrationId: string;
  type: string;
  actor: string;
  message?: string;
  phaseFrom?: PhaseName | null;
  phaseTo?: PhaseName | null;
  payload?: Record<string, unknown>;
}

export interface ListFilter {
  phases: PhaseName[];
  databaseName?: string;
  pageSize: number;
  pageToken?: string;
}

interface Cursor {
  c: string;
  i: string;
}

function encodeCursor(row: MigrationRow): string {
  return Buffer.from(JSON.stringify({ c: row.created_at.toISOString(), i: row.id } satisfies Cursor)).toString(
    "base64url",
  );
}

function decodeCursor(token: string): Cursor {
  try {
    const v = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Cursor;
    if (typeof v.c !== "string" || typeof v.i !== "string" || Number.isNaN(Date.parse(v.c))) throw new Error("shape");
    return v;
  } catch {
    throw new InvalidArgumentError(
      "page_token is not one this service issued; pass the next_page_token of a previous ListMigrations response, or leave it empty",
    );
  }
}

/** JSON with sorted keys: jsonb does not keep key order, so compare this way. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  );
}

/**
 * A request's event carries the trace of the API call that made it (when traced), so the step it triggers links
 * back to the call.
 */
function withCaller(e: NewEvent): Record<string, unknown> {
  const payload = e.payload ?? {};
  if (e.type !== "OPERATOR_ACTION" && e.type !== "CREATED") return payload;
  const ctx = trace.getActiveSpan()?.spanContext();
  return ctx && trace.isSpanContextValid(ctx)
    ? { ...payload, trace: { traceId: ctx.traceId, spanId: ctx.spanId } }
    : payload;
}

/** CDC and reverse replication figures of a migration's state, as the gauges show them. */
function telemetryParts(p: Pick<MigrationStateJson, "cdc" | "cdcSlots" | "reverse">) {
  const slots = p.cdcSlots ?? [];
  const since = pausedSince(p as MigrationStateJson);
  const reverse = p.reverse && !p.reverse.stoppedReason ? p.reverse : undefined;
  const estimate = reverse ? drainEstimateMs(reverse) : undefined;
  return {
    cdcPausedSeconds: slots.length === 0 ? undefined : since ? (Date.now() - since.getTime()) / 1000 : 0,
    cdcRetained: new Map(
      slots.filter((s) => s.retainedWalBytes !== undefined).map((s) => [s.slotName, Number(s.retainedWalBytes)]),
    ),
    reverse: reverse
      ? {
          lagBytes: Number(reverse.lagBytes),
          retainedBytes: Number(reverse.retainedBytes),
          drainEstimateSeconds: estimate === undefined ? undefined : estimate / 1000,
        }
      : undefined,
  };
}

/** Reads and writes migrations and their event log. */
export class MigrationRepo {
  private readonly listeners: ((events: EventRow[]) => void)[] = [];
  /** Events appended inside each open transaction, handed to the listeners once it commits. */
  private readonly pending = new WeakMap<object, EventRow[]>();

  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Called with every batch of events this process commits, in sequence order: traces and metrics see each
   * verdict, phase change and action as the log records it, never one the log does not hold.
   */
  onCommitted(fn: (events: EventRow[]) => void): void {
    this.listeners.push(fn);
  }

  private async tx<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    const appended: EventRow[] = [];
    const out = await this.db.transaction().execute(async (trx) => {
      this.pending.set(trx, appended);
      return fn(trx);
    });
    if (appended.length > 0) {
      for (const l of this.listeners) {
        try {
          l(appended);
        } catch {
          // A listener's fault must not fail a committed write.
        }
      }
    }
    return out;
  }

  /**
   * The CHECK_RESULT events a state write carries: each verdict that is news against the state it replaces
   * (read under the row lock), so a watcher sees every check however the step recorded it. `except` names a
   * verdict the caller logs itself.
   */
  private async verdictEvents(
    trx: Transaction<Database>,
    id: string,
    state: MigrationStateJson | undefined,
    actor: string,
    except?: string,
  ): Promise<void> {
    if (!state?.checks?.length) return;
    const prev = await trx.selectFrom("migrations").select("state").where("id", "=", id).forUpdate().executeTakeFirst();
    const before = ((prev?.state as MigrationStateJson | undefined)?.checks ?? []) as CheckResult[];
    for (const c of newVerdicts(before, state.checks).filter((c) => c.name !== except)) {
      await this.appendEvent(trx, {
        migrationId: id,
        type: "CHECK_RESULT",
        actor,
        message: c.message,
        payload: { check: c },
      });
    }
  }

  /**
   * Creates a migration and its CREATED event in one transaction. A request_id
   * seen before returns the migration it created (created=false).
   */
  async create(m: NewMigration): Promise<{ row: MigrationRow; created: boolean }> {
    if (m.requestId) {
      const prior = await this.byRequestId(m.requestId);
      if (prior) return this.retried(prior, m);
    }
    try {
      const row = await this.tx(async (trx) => {
        await trx
          .insertInto("instance_claims")
          .values([
            { instance_key: m.sourceKey, migration_id: m.id, role: "source" },
            { instance_key: m.targetKey, migration_id: m.id, role: "target" },
          ])
          .execute();
        const row = await trx
          .insertInto("migrations")
          .values({
            id: m.id,
            request_id: m.requestId,
            database_name: m.databaseName,
            provider: m.provider,
            source_key: m.sourceKey,
            target_key: m.targetKey,
            spec: JSON.stringify(m.spec),
            phase: "PENDING",
            state: JSON.stringify({}),
            created_by: m.actor,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await this.appendEvent(trx, {
          migrationId: m.id,
          type: "CREATED",
          actor: m.actor,
          message: `migration of ${m.databaseName} created`,
          phaseTo: "PENDING",
        });
        return row;
      });
      return { row, created: true };
    } catch (e) {
      const constraint = uniqueViolation(e);
      if (constraint === "migrations_request_id" && m.requestId) {
        const prior = await this.byRequestId(m.requestId);
        if (prior) return this.retried(prior, m);
      }
      if (constraint === "instance_claims_pkey") throw await this.claimedError(m);
      if (constraint === "migrations_active_source" || constraint === "migrations_active_target") {
        const side = constraint === "migrations_active_source" ? "source" : "target";
        const key = side === "source" ? m.sourceKey : m.targetKey;
        const other = await this.db
          .selectFrom("migrations")
          .select(["id", "phase"])
          .where(side === "source" ? "source_key" : "target_key", "=", key)
          .where("phase", "not in", [...TERMINAL_PHASES])
          .executeTakeFirst();
        throw new AlreadyExistsError(
          `the ${side} ${key} already has an active migration${other ? ` (${other.id}, phase ${other.phase})` : ""}; wait for it to finish, or abort or roll it back first`,
        );
      }
      throw e;
    }
  }

  /** Names the instance of a new migration that another live migration holds, that migration, its phase and its role. */
  private async claimedError(m: NewMigration): Promise<FailedPreconditionError> {
    const held = await this.db
      .selectFrom("instance_claims as c")
      .innerJoin("migrations as g", "g.id", "c.migration_id")
      .select(["c.instance_key", "c.role", "g.id", "g.phase", "g.database_name"])
      .where("c.instance_key", "in", [m.sourceKey, m.targetKey])
      .execute();
    const what = held
      .map(
        (h) =>
          `${h.instance_key} (wanted as ${h.instance_key === m.sourceKey ? "source" : "target"}) is the ${h.role} of migration ${h.id} of ${h.database_name}, in ${h.phase}`,
      )
      .join("; ");
    return new FailedPreconditionError(
      `${what || "an instance of this migration is taken by another live migration"}. An instance takes part in one migration at a time, ` +
        `until that migration is FINALIZED, ROLLED_BACK, ABORTED or FAILED (a COMPLETED one keeps both sides: it can still roll back); finish, roll back or finalize it first`,
    );
  }

  private retried(prior: MigrationRow, m: NewMigration): { row: MigrationRow; created: boolean } {
    if (canonical(prior.spec) !== canonical(m.spec)) {
      throw new AlreadyExistsError(
        `request_id "${m.requestId}" was already used for a different migration (${prior.id}); use a new request_id for a new request`,
      );
    }
    return { row: prior, created: false };
  }

  /** The migration a request_id created, if any. */
  byRequestId(requestId: string): Promise<MigrationRow | undefined> {
    return this.db.selectFrom("migrations").selectAll().where("request_id", "=", requestId).executeTakeFirst();
  }

  find(id: string): Promise<MigrationRow | undefined> {
    return this.db.selectFrom("migrations").selectAll().where("id", "=", id).executeTakeFirst();
  }

  async get(id: string): Promise<MigrationRow> {
    const row = await this.find(id);
    if (!row) throw new NotFoundError(`no migration with id "${id}"; ListMigrations shows the existing ones`);
    return row;
  }

  /** Newest first, keyset-paginated so pages stay stable while migrations are created. */
  async list(f: ListFilter): Promise<{ rows: MigrationRow[]; nextPageToken: string }> {
    let q = this.db.selectFrom("migrations").selectAll();
    if (f.phases.length > 0) q = q.where("phase", "in", f.phases);
    if (f.databaseName) q = q.where("database_name", "=", f.databaseName);
    if (f.pageToken) {
      const c = decodeCursor(f.pageToken);
      q = q.where(sql<boolean>`(created_at, id) < (${c.c}::timestamptz, ${c.i})`);
    }
    const rows = await q
      .orderBy("created_at", "desc")
      .orderBy("id", "desc")
      .limit(f.pageSize + 1)
      .execute();
    const more = rows.length > f.pageSize;
    const page = more ? rows.slice(0, f.pageSize) : rows;
    const last = page[page.length - 1];
    return { rows: page, nextPageToken: more && last ? encodeCursor(last) : "" };
  }

  events(migrationId: string, afterSeq: string, limit = 500): Promise<EventRow[]> {
    return this.db
      .selectFrom("events")
      .selectAll()
      .where("migration_id", "=", migrationId)
      .where("seq", ">", afterSeq)
      .orderBy("seq")
      .limit(limit)
      .execute();
  }

  phaseHistory(migrationIds: string[]): Promise<EventRow[]> {
    if (migrationIds.length === 0) return Promise.resolve([]);
    return this.db
      .selectFrom("events")
      .selectAll()
      .where("migration_id", "in", migrationIds)
      .where("phase_to", "is not", null)
      .orderBy("seq")
      .execute();
  }

  /**
   * Appends to the event log inside the caller's transaction. Callers hold the
   * migration's row lock (they update it), so one migration's events commit in
   * sequence order and a watcher reading "after seq N" never skips one.
   */
  async appendEvent(trx: Transaction<Database> | Kysely<Database>, e: NewEvent): Promise<EventRow> {
    return trx
      .insertInto("events")
      .values({
        migration_id: e.migrationId,
        type: e.type,
        actor: e.actor,
        message: e.message ?? "",
        phase_from: e.phaseFrom ?? null,
        phase_to: e.phaseTo ?? null,
        payload: JSON.stringify(withCaller(e)),
      })
      .returningAll()
      .executeTakeFirstOrThrow()
      .then((row) => {
        this.pending.get(trx)?.push(row);
        return row;
      });
  }

  /** Migrations some replica should be driving: not in a final phase. */
  async activeIds(): Promise<string[]> {
    const rows = await this.db
      .selectFrom("migrations")
      .select("id")
      .where("phase", "not in", [...TERMINAL_PHASES])
      .orderBy("created_at")
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * Moves a migration from one phase to another and logs it, in one
   * transaction, only if the phase is still `from` and the caller still holds
   * the lease: a replica that lost its lease cannot write.
   */
  async transition(
    lease: Lease,
    id: string,
    from: PhaseName,
    to: PhaseName,
    actor: string,
    reason: string,
    patch: {
      state?: MigrationStateJson;
      clearRequest?: boolean;
      paused?: boolean;
      /** An event that follows the move in the same commit (the next step's start: one commit, not two). */
      then?: Omit<NewEvent, "migrationId">;
    } = {},
  ): Promise<MigrationRow> {
    assertTransition(from, to);
    return this.tx(async (trx) => {
      await this.verdictEvents(trx, id, patch.state, actor);
      const q = trx
        .updateTable("migrations")
        .set((eb) => ({
          phase: to,
          updated_at: new Date(),
          version: eb("version", "+", 1),
          ...(patch.state ? { state: JSON.stringify(patch.state) } : {}),
          ...(patch.clearRequest ? { requested_action: null } : {}),
          ...(patch.paused !== undefined ? { paused: patch.paused } : {}),
        }))
        .where("id", "=", id)
        .where("phase", "=", from)
        .where(leaseHeld(lease));
      const row = await q.returningAll().executeTakeFirst();
      if (!row)
        throw new LeaseLostError(
          `migration ${id} was not moved from ${from} to ${to}: this replica no longer holds its lease, or its phase changed`,
        );
      // Its instances are free for other migrations once it can no longer act on them.
      if (TERMINAL_PHASES.includes(to))
        await trx.deleteFrom("instance_claims").where("migration_id", "=", id).execute();
      await this.appendEvent(trx, {
        migrationId: id,
        type: "PHASE_CHANGED",
        actor,
        message: reason,
        phaseFrom: from,
        phaseTo: to,
      });
      if (patch.then) await this.appendEvent(trx, { ...patch.then, migrationId: id });
      return row;
    });
  }

  /** Logs an event (and optionally updates state) under the lease. */
  async record(
    lease: Lease,
    id: string,
    e: Omit<NewEvent, "migrationId">,
    state?: MigrationStateJson,
    extra: { paused?: boolean } = {},
  ): Promise<void> {
    await this.tx(async (trx) => {
      const own = e.type === "CHECK_RESULT" ? (e.payload?.check as CheckResult | undefined)?.name : undefined;
      await this.verdictEvents(trx, id, state, e.actor, own);
      const row = await trx
        .updateTable("migrations")
        .set({
          updated_at: new Date(),
          ...(state ? { state: JSON.stringify(state) } : {}),
          ...(extra.paused !== undefined ? { paused: extra.paused } : {}),
        })
        .where("id", "=", id)
        .where(leaseHeld(lease))
        .returning("id")
        .executeTakeFirst();
      if (!row) throw new LeaseLostError(`migration ${id}: this replica no longer holds its lease`);
      await this.appendEvent(trx, { ...e, migrationId: id });
    });
  }

  /** Migrations per phase (every phase that has one), and those still active with what the metrics show of each. */
  async telemetrySnapshot(): Promise<TelemetrySnapshot> {
    const [counts, active] = await Promise.all([
      this.db
        .selectFrom("migrations")
        .select(["phase", (eb) => eb.fn.countAll<string>().as("n")])
        .groupBy("phase")
        .execute(),
      this.db
        .selectFrom("migrations")
        .select([
          "id",
          "database_name",
          "phase",
          "paused",
          "updated_at",
          sql<MigrationStateJson["replication"] | null>`state->'replication'`.as("replication"),
          sql<string | null>`state->>'phaseEnteredAt'`.as("entered"),
          sql<string | null>`state->'held'->>'phase'`.as("held"),
          sql<
            Pick<MigrationStateJson, "cdc" | "cdcSlots" | "reverse">
          >`jsonb_build_object('cdc', state->'cdc', 'cdcSlots', state->'cdcSlots', 'reverse', state->'reverse')`.as(
            "parts",
          ),
        ])
        .where("phase", "not in", [...TERMINAL_PHASES])
        .execute(),
    ]);
    return {
      byPhase: new Map(counts.map((c) => [c.phase, Number(c.n)])),
      active: active.map((r) => ({
        id: r.id,
        databaseName: r.database_name,
        phase: r.phase,
        replication: r.replication ?? undefined,
        phaseEnteredAt: r.entered ?? r.updated_at.toISOString(),
        held: r.held === r.phase,
        paused: r.paused,
        ...telemetryParts(r.parts),
      })),
    };
  }

  /**
   * The trace of the latest request of this kind (an operator's action, or the creation), if it was traced: what a
   * step it triggered links to.
   */
  async lastRequestTrace(
    id: string,
    type: "OPERATOR_ACTION" | "CREATED",
  ): Promise<{ traceId: string; spanId: string } | undefined> {
    const row = await this.db
      .selectFrom("events")
      .select("payload")
      .where("migration_id", "=", id)
      .where("type", "=", type)
      .orderBy("seq", "desc")
      .limit(1)
      .executeTakeFirst();
    const t = (row?.payload as { trace?: { traceId?: unknown; spanId?: unknown } } | undefined)?.trace;
    return typeof t?.traceId === "string" && typeof t.spanId === "string"
      ? { traceId: t.traceId, spanId: t.spanId }
      : undefined;
  }

  /** Persists state under the lease without an event (verdicts it carries are still logged). */
  async saveState(lease: Lease, id: string, state: MigrationStateJson): Promise<void> {
    await this.tx(async (trx) => {
      await this.verdictEvents(trx, id, state, "engine");
      const row = await trx
        .updateTable("migrations")
        .set({ updated_at: new Date(), state: JSON.stringify(state) })
        .where("id", "=", id)
        .where(leaseHeld(lease))
        .returning("id")
        .executeTakeFirst();
      if (!row) throw new LeaseLostError(`migration ${id}: this replica no longer holds its lease`);
    });
  }

  /**
   * An operator's request: checked against the phase under the row lock,
   * recorded with who asked, and left for the replica driving the migration.
   */
  async requestAction(id: string, action: OperatorAction, actor: string, reason: string): Promise<MigrationRow> {
    return this.tx(async (trx) => {
      const row = await trx.selectFrom("migrations").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
      if (!row) throw new NotFoundError(`no migration with id "${id}"; ListMigrations shows the existing ones`);
      // Asking twice for what is already under way is a retry, not an error.
      const repeat =
        (action === "approve" && row.cutover_approved) ||
        (action === "pause" && row.paused) ||
        ((action === "abort" || action === "rollback" || action === "finalize") && row.requested_action === action);
      if (repeat) return row;
      assertActionAllowed(action, row.phase, { paused: row.paused, requested: row.requested_action });
      const stopped = (row.state as MigrationStateJson).reverse?.stoppedReason;
      if (action === "rollback" && stopped) {
        throw new FailedPreconditionError(
          `migration ${id} can no longer roll back without losing the writes made on its target: reverse replication was dropped (${stopped}); FinalizeMigration closes the window`,
        );
      }
      const set =
        action === "approve"
          ? { cutover_approved: true }
          : action === "pause"
            ? { paused: true }
            : action === "resume"
              ? { paused: false }
              : { requested_action: action as RequestedAction };
      const updated = await trx
        .updateTable("migrations")
        .set({ ...set, updated_at: new Date() })
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await this.appendEvent(trx, {
        migrationId: id,
        type: "OPERATOR_ACTION",
        actor,
        message: reason ? `${action}: ${reason}` : action,
        payload: { action },
      });
      return updated;
    });
  }

  /** Logs a verdict an operator's request produced (outside the engine's state), as a CHECK_RESULT event. */
  async logCheck(id: string, actor: string, check: CheckResult): Promise<void> {
    await this.tx(async (trx) => {
      const row = await trx
        .updateTable("migrations")
        .set({ updated_at: new Date() })
        .where("id", "=", id)
        .returning("id")
        .executeTakeFirst();
      if (!row) throw new NotFoundError(`no migration with id "${id}"; ListMigrations shows the existing ones`);
      await this.appendEvent(trx, {
        migrationId: id,
        type: "CHECK_RESULT",
        actor,
        message: check.message,
        payload: { check },
      });
    });
  }

  /** Logs what an operator did outside the phase machine (e.g. dropped a slot), under the row lock. */
  async logOperatorEvent(
    id: string,
    actor: string,
    message: string,
    payload: Record<string, unknown> = {},
  ): Promise<MigrationRow> {
    return this.tx(async (trx) => {
      const row = await trx
        .updateTable("migrations")
        .set({ updated_at: new Date() })
        .where("id", "=", id)
        .returningAll()
        .executeTakeFirst();
      if (!row) throw new NotFoundError(`no migration with id "${id}"; ListMigrations shows the existing ones`);
      await this.appendEvent(trx, { migrationId: id, type: "OPERATOR_ACTION", actor, message, payload });
      return row;
    });
  }
}
