import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { UnavailableError } from "../domain/errors.js";
import { isTerminal, phaseToProto, type PhaseName } from "../domain/phases.js";
import { WatchMigrationResponseSchema, type WatchMigrationResponse } from "../gen/migration/v1/migration_pb.js";
import type { EventBus } from "../store/event-bus.js";
import type { MigrationRepo } from "../store/migration-repo.js";
import { linkedSignal } from "../support/linked-signal.js";
import { eventToProto } from "./convert.js";
import { wakeup } from "./watch-wakeup.js";

/** Fallback re-read for watchers, should a notification be lost. */
const WATCH_POLL_MS = 5_000;

/**
 * A migration's events after a sequence number, each with the phase right after it, as they commit: until the
 * migration reaches a phase it never leaves, the client goes, or the service drains (UNAVAILABLE, saying where to
 * resume). The caller has been authorized already.
 */
export async function* watchEvents(
  deps: { repo: MigrationRepo; bus: EventBus; shutdown: AbortSignal },
  id: string,
  afterSequence: bigint,
  ctx: HandlerContext,
): AsyncGenerator<WatchMigrationResponse> {
  const { repo, bus, shutdown } = deps;
  let cursor = afterSequence.toString();
  // The phase as of the cursor, so each response carries the phase right after its event.
  const before = (await repo.phaseHistory([id])).filter((e) => BigInt(e.seq) <= afterSequence);
  let phase: PhaseName = (before[before.length - 1]?.phase_to as PhaseName | undefined) ?? "PENDING";
  let signalled: boolean;
  // Subscribe before the first read so nothing committed in between is missed.
  const unsubscribe = bus.subscribe(id, () => (signalled = true));
  const linked = linkedSignal(ctx.signal, shutdown);
  try {
    while (!ctx.signal.aborted) {
      if (shutdown.aborted) {
        throw new UnavailableError(
          `the service is shutting down; watch again with after_sequence=${cursor} to continue where this stream stopped`,
        );
      }
      signalled = false;
      const events = await repo.events(id, cursor);
      for (const e of events) {
        cursor = e.seq;
        if (e.phase_to) phase = e.phase_to;
        yield create(WatchMigrationResponseSchema, { event: eventToProto(e), phase: phaseToProto(phase) });
      }
      if (events.length > 0) continue;
      // A migration that reached a phase it never leaves has nothing more to say.
      if (isTerminal(phase)) return;
      if (!signalled) await wakeup(linked.signal, WATCH_POLL_MS, (fn) => bus.subscribe(id, fn));
    }
  } finally {
    linked.dispose();
    unsubscribe();
  }
}
