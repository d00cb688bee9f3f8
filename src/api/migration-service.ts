import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { XdsRouter } from "../routing/xds-router.js";
import { FailedPreconditionError, InvalidArgumentError } from "../domain/errors.js";
import type { OperatorAction } from "../domain/transitions.js";
import {
  type MigrationService,
  type MigrationSpec,
  type WatchMigrationResponse,
  type WatchMigrationsResponse,
} from "../gen/migration/v1/migration_pb.js";
import { phaseFromProto, type PhaseName } from "../domain/phases.js";
import type { EventBus } from "../store/event-bus.js";
import type { MigrationRepo } from "../store/migration-repo.js";
import { actorOf } from "./caller.js";
import { verifyNow } from "../engine/verify-now.js";
import { createMigration } from "../engine/create-migration.js";
import type { Authorizer } from "./authorize.js";
import type { Inventory } from "./inventory.js";
import type { Action } from "../security/policy.js";
import type { CdcWatchers } from "../store/cdc-watchers.js";
import { watchEvents } from "./migration-watch.js";
import { watchFleet } from "./fleet-watch.js";
import { routingStatus } from "./routing-status.js";
import { checkToProto, migrationToProto } from "./convert.js";
import { runPreflight } from "../checks/preflight.js";
import { dropInactiveSlot } from "../engine/operator-remedies.js";
import type { Provider } from "../providers/provider.js";
import { normalizeSpec, resolveSpec, sourceRef, targetRef, type ProviderKind } from "../domain/spec.js";

export interface MigrationServiceDeps {
  repo: MigrationRepo;
  /** Which providers this service can drive; CreateMigration refuses the others. */
  providerAvailable: (p: ProviderKind) => string | undefined;
  providers: (spec: MigrationSpec) => Provider;
  bus: EventBus;
  router: XdsRouter;
  watchers: CdcWatchers;
  /** Aborted when the service drains: open watches end so clients reconnect elsewhere. */
  shutdown: AbortSignal;
  /** Who may do what to which database. */
  authz: Authorizer;
  /** Which instances serve which database: what authorization stands on. */
  inventory: Inventory;
}

/** What each operator action needs (approving and rolling back are an approver's; ending a migration an admin's). */
const ACTION_NEEDS: Record<OperatorAction, Action> = {
  approve: "approve",
  rollback: "approve",
  pause: "operate",
  resume: "operate",
  abort: "administer",
  finalize: "administer",
};

const MAX_PAGE = 500;
const DEFAULT_PAGE = 50;

function requireId(id: string): string {
  if (!id) throw new InvalidArgumentError("id is required: the migration id that CreateMigration returned");
  if (id.length > 64) throw new InvalidArgumentError(`id "${id.slice(0, 64)}…" is too long to be a migration id`);
  return id;
}

export function migrationService({
  repo,
  bus,
  shutdown,
  providerAvailable,
  providers,
  router,
  watchers,
  authz,
  inventory,
}: MigrationServiceDeps): ServiceImpl<typeof MigrationService> {
  /** The migration, once the caller is known to be allowed the action on its database. */
  async function allowed(ctx: HandlerContext, id: string, action: Action, what: string) {
    const row = await repo.get(requireId(id));
    await inventory.admitMigration(ctx, row, action, what);
    return row;
  }

  async function load(ctx: HandlerContext, id: string) {
    const row = await allowed(ctx, id, "view", "read migration " + id);
    const history = await repo.phaseHistory([row.id]);
    return migrationToProto(row, history, await watchers.of(row.database_name));
  }

  /** Operator actions: recorded with who asked; the replica driving the migration carries them out. */
  async function act(req: { id: string; reason: string }, ctx: HandlerContext, action: OperatorAction) {
    const actor = actorOf(ctx);
    if (req.reason.length > 1000) throw new InvalidArgumentError("reason must be at most 1000 characters");
    await allowed(ctx, req.id, ACTION_NEEDS[action], `${action} migration ${req.id}`);
    const row = await repo.requestAction(requireId(req.id), action, actor, req.reason);
    return { migration: migrationToProto(row, await repo.phaseHistory([row.id])) };
  }

  return {
    async createMigration(req, ctx) {
      const actor = actorOf(ctx);
      if (req.requestId.length > 128) throw new InvalidArgumentError("request_id must be at most 128 characters");
      const spec = normalizeSpec(req.spec);
      const unavailable = providerAvailable(spec.provider);
      if (unavailable) throw new FailedPreconditionError(unavailable);
      await inventory.admitSpec(ctx, spec, "operate", "create a migration");
      const { row, created } = await createMigration({ repo, providers }, spec, req.requestId || null, actor);
      return { migration: migrationToProto(row, await repo.phaseHistory([row.id])), created };
    },

    async getMigration(req, ctx) {
      return { migration: await load(ctx, req.id) };
    },

    async listMigrations(req, ctx) {
      if (req.pageSize > MAX_PAGE)
        throw new InvalidArgumentError(`page_size must be at most ${MAX_PAGE}; got ${req.pageSize}`);
      const phases: PhaseName[] = req.phases.map((p) => {
        const name = phaseFromProto(p);
        if (!name)
          throw new InvalidArgumentError(
            `phases holds ${p}, which is not a phase; use the Phase enum values other than PHASE_UNSPECIFIED`,
          );
        return name;
      });
      const { rows, nextPageToken } = await repo.list({
        phases,
        databaseName: req.databaseName || undefined,
        pageSize: req.pageSize || DEFAULT_PAGE,
        pageToken: req.pageToken || undefined,
      });
      // Only what the caller may view; a page can come back short, its token still leads on.
      const may = await authz.viewable(
        ctx,
        rows.map((r) => r.database_name),
      );
      const visible = rows.filter((r) => may(r.database_name));
      const history = await repo.phaseHistory(visible.map((r) => r.id));
      return { migrations: visible.map((r) => migrationToProto(r, history)), nextPageToken };
    },

    async *watchMigration(req, ctx: HandlerContext): AsyncGenerator<WatchMigrationResponse> {
      const id = requireId(req.id);
      await allowed(ctx, id, "view", "watch migration " + id);
      yield* watchEvents({ repo, bus, shutdown }, id, req.afterSequence, ctx);
    },

    async *watchMigrations(req, ctx: HandlerContext): AsyncGenerator<WatchMigrationsResponse> {
      if (req.databaseName.length > 63) throw new InvalidArgumentError("database_name is at most 63 characters");
      yield* watchFleet({ repo, bus, authz, shutdown }, req.databaseName, ctx);
    },

    async runPreflight(req, ctx) {
      const spec = normalizeSpec(req.spec);
      const unavailable = providerAvailable(spec.provider);
      if (unavailable) throw new FailedPreconditionError(unavailable);
      await inventory.admitSpec(ctx, spec, "operate", "run a preflight");
      const checks = await runPreflight(
        providers(spec),
        sourceRef(spec),
        targetRef(spec),
        spec.databaseName,
        resolveSpec(spec).schema,
      );
      return { checks: checks.map(checkToProto), passed: checks.every((c) => c.status !== "FAIL") };
    },
    async dropInactiveSlot(req, ctx) {
      const actor = actorOf(ctx);
      await allowed(ctx, req.id, "operate", "drop a slot of migration " + req.id);
      const { row, retained } = await dropInactiveSlot(
        repo,
        providers,
        requireId(req.id),
        req.slotName,
        actor,
        req.reason,
      );
      return { migration: migrationToProto(row, await repo.phaseHistory([row.id])), retainedBytes: retained };
    },
    async verifyMigration(req, ctx) {
      const actor = actorOf(ctx);
      await allowed(ctx, req.id, "operate", "verify migration " + req.id);
      const { check, report } = await verifyNow(repo, providers, requireId(req.id), actor, ctx.signal);
      return { check: checkToProto(check), mismatches: report.mismatches };
    },
    registerDatabase: (req, ctx) => inventory.register(ctx, req.database, actorOf(ctx)),
    listDatabases: (req, ctx) => inventory.list(ctx, req),
    async getAccess(req, ctx) {
      if (req.databaseNames.length > MAX_PAGE)
        throw new InvalidArgumentError(`database_names holds ${req.databaseNames.length} names; at most ${MAX_PAGE}`);
      return authz.roles(ctx, [...new Set(req.databaseNames)]);
    },
    approveCutover: (req, ctx) => act(req, ctx, "approve"),
    pauseMigration: (req, ctx) => act(req, ctx, "pause"),
    resumeMigration: (req, ctx) => act(req, ctx, "resume"),
    abortMigration: (req, ctx) => act(req, ctx, "abort"),
    rollbackMigration: (req, ctx) => act(req, ctx, "rollback"),
    finalizeMigration: (req, ctx) => act(req, ctx, "finalize"),
    getRoutingStatus: (req, ctx) => routingStatus(router, authz, req.databaseName, ctx),
  };
}
