import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { directiveFor, type Directive } from "../cdc/directive.js";
import { InvalidArgumentError, UnavailableError } from "../domain/errors.js";
import {
  type CdcService,
  SlotAction,
  WatchSlotDirectivesResponseSchema,
  type WatchSlotDirectivesResponse,
} from "../gen/migration/v1/migration_pb.js";
import type { XdsRouter } from "../routing/xds-router.js";
import type { EventBus } from "../store/event-bus.js";
import type { MigrationRepo } from "../store/migration-repo.js";
import { DATABASE_NAME } from "../domain/spec.js";
import { wakeup } from "./watch-wakeup.js";
import { linkedSignal } from "../support/linked-signal.js";
import type { Authorizer } from "./authorize.js";
import type { CdcWatchers } from "../store/cdc-watchers.js";

export interface CdcServiceDeps {
  repo: MigrationRepo;
  bus: EventBus;
  router: XdsRouter;
  watchers: CdcWatchers;
  shutdown: AbortSignal;
  authz: Authorizer;
}

const POLL_MS = 5_000;
// PostgreSQL's own rule for slot names.
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

function toProto(d: Directive): WatchSlotDirectivesResponse {
  return create(WatchSlotDirectivesResponseSchema, {
    directive: {
      action: SlotAction[d.action],
      endpoint: d.endpoint,
      slotName: d.slotName,
      database: d.database,
      drainToLsn: d.drainToLsn,
      resumeFromLsn: d.resumeFromLsn,
      reanchor: d.reanchor ?? false,
      migrationId: d.migrationId,
      reason: d.reason,
      since: d.since ? timestampFromDate(new Date(d.since)) : undefined,
    },
  });
}

export function cdcService({
  repo,
  bus,
  router,
  watchers,
  shutdown,
  authz,
}: CdcServiceDeps): ServiceImpl<typeof CdcService> {
  return {
    async *watchSlotDirectives(req, ctx: HandlerContext) {
      if (!DATABASE_NAME.test(req.databaseName)) {
        throw new InvalidArgumentError(
          `database_name "${req.databaseName}" is not valid: the logical database the data access layer routes, e.g. "billing-db"`,
        );
      }
      if (!SLOT_NAME.test(req.slotName)) {
        throw new InvalidArgumentError(
          `slot_name "${req.slotName}" is not valid: 1 to 63 lowercase letters, digits and underscores`,
        );
      }
      if (req.consumerId.length < 1 || req.consumerId.length > 128) {
        throw new InvalidArgumentError(
          "consumer_id is required (1 to 128 characters): who is watching, as the migration's consumer inventory will list it",
        );
      }
      await authz.require(ctx, "view", req.databaseName, "watch slot directives");
      const linked = linkedSignal(ctx.signal, shutdown);
      const signal = linked.signal;
      let signalled: boolean;
      // Subscribe before the first read so nothing committed in between is missed.
      const unsubscribe = bus.subscribeAll(() => (signalled = true));
      let last = "";
      try {
        while (!ctx.signal.aborted) {
          if (shutdown.aborted)
            throw new UnavailableError("the service is shutting down; watch again on another replica");
          signalled = false;
          // Refreshed at least every POLL_MS: the inventory drops a watch that stops refreshing.
          await watchers.seen(req.databaseName, req.slotName, req.consumerId);
          const newest = (await repo.list({ phases: [], databaseName: req.databaseName, pageSize: 1, pageToken: "" }))
            .rows[0];
          const route = await router.current(req.databaseName);
          const d = directiveFor(newest, req.slotName, route?.endpoint);
          const key = JSON.stringify(d);
          if (key !== last) {
            last = key;
            yield toProto(d);
          }
          if (!signalled) await wakeup(signal, POLL_MS, (fn) => bus.subscribeAll(fn));
        }
      } finally {
        linked.dispose();
        unsubscribe();
        await watchers.gone(req.databaseName, req.slotName, req.consumerId).catch(() => {});
      }
    },
  };
}
