import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { UnavailableError } from "../domain/errors.js";
import { WatchMigrationsResponseSchema, type WatchMigrationsResponse } from "../gen/migration/v1/migration_pb.js";
import type { EventBus } from "../store/event-bus.js";
import type { MigrationRepo, MigrationRow } from "../store/migration-repo.js";
import { linkedSignal } from "../support/linked-signal.js";
import type { Authorizer } from "./authorize.js";
import { migrationToProto } from "./convert.js";
import { wakeup } from "./watch-wakeup.js";

/** Fallback re-read of everything, should a notification be lost. */
const RESYNC_MS = 30_000;
/** Events that come close together are sent as one batch of changed migrations. */
const BATCH_MS = 200;
/** A fleet is at most this many migrations to list at once. */
const MAX_LISTED = 5000;

/**
 * The fleet, live: every migration the caller may view, then each one again as its events commit (several events
 * of one migration close together give one message). Ends when the client goes; UNAVAILABLE when the service drains.
 */
export async function* watchFleet(
  deps: { repo: MigrationRepo; bus: EventBus; authz: Authorizer; shutdown: AbortSignal },
  databaseName: string,
  ctx: HandlerContext,
): AsyncGenerator<WatchMigrationsResponse> {
  const { repo, bus, authz, shutdown } = deps;
  const changed = new Set<string>();
  let everything = true;
  let lastFull = 0;
  // Subscribed before the first read, so nothing committed in between is missed.
  const unsubscribe = bus.subscribeAll((id) => (id ? changed.add(id) : (everything = true)));
  const linked = linkedSignal(ctx.signal, shutdown);
  try {
    while (!ctx.signal.aborted) {
      if (shutdown.aborted) throw new UnavailableError("the service is shutting down; watch again to continue");
      let rows: MigrationRow[];
      if (everything || Date.now() - lastFull > RESYNC_MS) {
        everything = false;
        changed.clear();
        lastFull = Date.now();
        rows = [];
        let pageToken: string | undefined;
        do {
          const page = await repo.list({
            phases: [],
            databaseName: databaseName || undefined,
            pageSize: 500,
            pageToken,
          });
          rows.push(...page.rows);
          pageToken = page.nextPageToken || undefined;
        } while (pageToken && rows.length < MAX_LISTED);
      } else {
        const ids = [...changed];
        changed.clear();
        rows = (await Promise.all(ids.map((id) => repo.find(id)))).filter(
          (r): r is MigrationRow => r !== undefined && (!databaseName || r.database_name === databaseName),
        );
      }
      const may = await authz.viewable(
        ctx,
        rows.map((r) => r.database_name),
      );
      const visible = rows.filter((r) => may(r.database_name));
      const history = await repo.phaseHistory(visible.map((r) => r.id));
      for (const r of visible) yield create(WatchMigrationsResponseSchema, { migration: migrationToProto(r, history) });
      if (changed.size === 0 && !everything) {
        await wakeup(linked.signal, RESYNC_MS, (fn) => bus.subscribeAll(fn));
        // A burst of events (a cutover's phases) is read once.
        await new Promise((r) => setTimeout(r, BATCH_MS));
      }
    }
  } finally {
    linked.dispose();
    unsubscribe();
  }
}
