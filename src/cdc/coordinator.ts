import { resolveSpec } from "../domain/spec.js";
import { check, mergeChecks, type CheckResult } from "../domain/check.js";
import { DeadlineExceededError, FailedPreconditionError, unlessGone } from "../domain/errors.js";
import { CdcMode, type MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import { lsnAtLeast, lsnMax } from "../domain/lsn.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import {
  isPausedStage,
  pausedSince,
  type CdcSlotRecord,
  type CdcStage,
  type CdcStateJson,
  type MigrationStateJson,
} from "../domain/state.js";
import {
  advanceSlot,
  dropSlots,
  endReaders,
  endReadersOn,
  logicalSlots,
  logicalSlotsOn,
  positionForTargetProgress,
  publications,
  readSlots,
  repositionSlot,
  restoreSlotsIn,
  retainedWal,
  skipWalTo,
  unreadChanges,
  waitSent,
  waitSentOn,
  type HandedOver,
  type LogicalSlot,
} from "./slots.js";

/**
 * CDC continuity across cutover and rollback. Consumers of logical slots on
 * the source drain to the final LSN while the source is fenced, pause, and
 * resume on slots recreated on the promoted target before it takes traffic;
 * a rollback does the mirror image. Every step is idempotent: it reads where
 * the slots are and only does what is missing.
 */
export interface CdcContext {
  provider: Provider;
  source: InstanceRef;
  target: InstanceRef;
  spec: MigrationSpec;
  state: MigrationStateJson;
  /** Persists the state with a CDC event, so consumers watching their directives learn of it now. */
  note(message: string): Promise<void>;
  signal?: AbortSignal;
}

const coordinating = (spec: MigrationSpec) => spec.cdcPolicy?.mode !== CdcMode.IGNORE;
/**
 * How long a hand-over waits for a walsender to push what is left of its
 * stream (cdc_policy.drain_timeout). It does not wait on the consumer (no
 * confirmation is awaited): a healthy stream needs milliseconds; only a
 * consumer whose socket is full makes it wait.
 */
const handoverMs = (spec: MigrationSpec, remainingMs: number) =>
  Math.max(1, Math.min(resolveSpec(spec).drainTimeoutMs, remainingMs));
/** Reverse replication's publication on the source (see replication/reverse.ts), through which a kept source slot is read for positions. */
const REVERSE_PUBLICATION = "pgshift_reverse";
const pauseAlertMs = (spec: MigrationSpec) => resolveSpec(spec).pauseAlertAfterMs;
const names = (state: MigrationStateJson) => (state.cdcSlots ?? []).map((s) => s.slotName);

async function records(
  ctx: CdcContext,
  slots: LogicalSlot[],
  opts: { publications: "read" | "keep" } = { publications: "read" },
): Promise<CdcSlotRecord[]> {
  const prev = new Map((ctx.state.cdcSlots ?? []).map((r) => [r.slotName, r]));
  const pubs = new Map<string, string[]>();
  for (const db of new Set(slots.map((s) => s.database))) {
    // Inside the cutover window the publications read moments ago stand: the source takes no DDL while fenced.
    const known =
      opts.publications === "keep" ? [...prev.values()].find((r) => r.database === db)?.publications : undefined;
    pubs.set(db, known ?? (await publications(ctx.provider, ctx.source, db)));
  }
  return slots.map((s) => ({
    ...prev.get(s.name),
    slotName: s.name,
    plugin: s.plugin,
    database: s.database,
    confirmedFlushLsn: s.confirmedFlushLsn ?? "",
    restartLsn: s.restartLsn ?? "",
    active: s.active,
    // The consumer seen before its walsender was ended is the one worth remembering.
    consumer: s.consumer ?? prev.get(s.name)?.consumer ?? "",
    publications: pubs.get(s.database) ?? [],
    recordedAt: new Date().toISOString(),
  }));
}

/** Puts the source's logical slots and their readers on record, touching nothing (before cutover, for operators to see). */
export async function inventory(ctx: CdcContext): Promise<number> {
  ctx.state.cdcSlots = await records(ctx, await logicalSlots(ctx.provider, ctx.source));
  return ctx.state.cdcSlots.length;
}

/** Moves consumers to a stage and persists it with an event (so consumers watching their directives learn of it now). */
async function setStage(
  ctx: CdcContext,
  to: CdcStage,
  side: "source" | "target",
  extra: Partial<CdcStateJson>,
  message: string,
): Promise<void> {
  await stage(ctx, to, side, extra);
  await ctx.note(message);
}

/** Moves consumers to a stage in the state only; the caller persists it. */
async function stage(
  ctx: CdcContext,
  to: CdcStage,
  side: "source" | "target",
  extra: Partial<CdcStateJson>,
): Promise<void> {
  const paused = isPausedStage(to);
  const prev = ctx.state.cdc;
  const wasPaused = isPausedStage(prev?.stage);
  ctx.state.cdc = {
    stage: to,
    side,
    since: new Date().toISOString(),
    endpoint: await ctx.provider.endpoint(side === "source" ? ctx.source : ctx.target),
    // A pause that carries on (draining, paused, then moved but not read yet) keeps counting from its start.
    pausedSince:
      paused || extra.awaitingReaders
        ? ((wasPaused || prev?.awaitingReaders ? prev?.pausedSince : undefined) ?? new Date().toISOString())
        : undefined,
    alerted: (paused || extra.awaitingReaders) && (wasPaused || prev?.awaitingReaders) ? prev?.alerted : undefined,
    // Once the sides were found to count positions apart, every later hand-over re-anchors too.
    ...(prev?.lsnDiscontinuous ? { lsnDiscontinuous: true } : {}),
    ...extra,
  };
}

/**
 * CDC_PREPARE, with the source fenced and its final LSN known: each logical
 * slot's stream is handed over without waiting on its consumer. A connected
 * walsender is let push what is left up to the final LSN (milliseconds), its
 * position recorded, then it is ended: its consumer has received everything
 * the source will ever have for it. A slot nobody reads must have nothing
 * left to stream before the final LSN (the target's slot cannot stream what
 * precedes it); if it has, the cutover falls back at once, so that its
 * consumer reads it on the source when it returns.
 */
export async function drainAndPause(ctx: CdcContext, finalLsn: string, remainingMs: number): Promise<string> {
  // Done already (it starts alongside FINAL_SYNC's replay wait): nothing to do, not even a connection.
  if (ctx.state.cdcHandOver?.lsn === finalLsn) return ctx.state.cdcHandOver.reason;
  if (ctx.state.cdc?.stage === "PAUSED" && ctx.state.cdc.side === "source" && ctx.state.cdc.drainToLsn === finalLsn) {
    return `logical slot(s) handed over at ${finalLsn}: ${names(ctx.state).join(", ")}`;
  }
  const reason = await handOver(ctx, finalLsn, remainingMs);
  ctx.state.cdcHandOver = { lsn: finalLsn, reason };
  return reason;
}

async function handOver(ctx: CdcContext, finalLsn: string, remainingMs: number): Promise<string> {
  // One connection for the whole hand-over: it runs with writes stopped, and each new connection costs.
  return ctx.provider.sql(ctx.source).session(async (c) => {
    const slots = await logicalSlotsOn(c);
    if (!coordinating(ctx.spec)) {
      ctx.state.cdcSlots = await records(ctx, slots);
      return `${slots.length} logical slot(s) on record; their consumers are the operator's (CDC_MODE_IGNORE)`;
    }
    if (slots.length === 0) {
      ctx.state.cdcSlots = [];
      return "no logical slots to coordinate";
    }
    if (ctx.state.cdc?.stage !== "DRAINING" && ctx.state.cdc?.stage !== "PAUSED") {
      // A new hand-over: what an earlier attempt (before a fallback) recorded no longer holds.
      ctx.state.cdcSlots = (await records(ctx, slots, { publications: "keep" })).map((r) => ({
        ...r,
        receivedLsn: undefined,
        readOnTargetLsn: undefined,
        sourceResumeLsn: undefined,
        streamStoppedAt: undefined,
        streamResumedAt: undefined,
        toStreamFromSource: undefined,
      }));
      // Persisted with the positions below: consumers that follow directives learn of the pause then.
      await stage(ctx, "DRAINING", "source", { drainToLsn: finalLsn, resumed: false });
    }
    const list = names(ctx.state);
    const recs = ctx.state.cdcSlots ?? [];
    // Slots handed over before a crash keep what was recorded then; their readers may be gone since.
    const pending = recs.filter((r) => !r.receivedLsn).map((r) => r.slotName);
    let handed: HandedOver[];
    try {
      handed = await waitSentOn(c, ctx.source, pending, finalLsn, handoverMs(ctx.spec, remainingMs), ctx.signal);
    } catch (e) {
      if (!(e instanceof DeadlineExceededError)) throw e;
      // While we wait, the source takes no writes: no retry, fall back at once.
      throw new FailedPreconditionError(
        `${e.rawMessage}; the consumer reads too slowly to be handed over: speed it up, then ResumeMigration`,
      );
    }
    const now = new Date().toISOString();
    for (const h of handed.filter((x) => x.sent !== null)) {
      const r = recs.find((x) => x.slotName === h.name)!;
      Object.assign(r, {
        receivedLsn: h.sent!,
        confirmedFlushLsn: h.confirmed ?? r.confirmedFlushLsn,
        streamStoppedAt: now,
      });
    }
    // Positions first, then the readers ended: a crash in between finds them on record.
    await ctx.note(
      `CDC consumers of ${list.join(", ")} told to confirm ${finalLsn} and pause; streams handed over: ${
        handed
          .filter((h) => h.sent !== null)
          .map((h) => `${h.name} (sent ${h.sent})`)
          .join(", ") || "none connected"
      }`,
    );
    await endReadersOn(c, ctx.source, list);
    for (const h of handed.filter((x) => x.sent === null)) {
      const r = recs.find((x) => x.slotName === h.name)!;
      if (!h.confirmed || !lsnAtLeast(h.confirmed, finalLsn)) {
        const unread = await unreadChanges(ctx.provider, ctx.source, r.database, r.slotName, finalLsn);
        if (unread > 0) {
          throw new FailedPreconditionError(
            `no consumer reads logical slot ${r.slotName} and it has ${unread} change(s) committed before the final LSN ${finalLsn} still to stream (confirmed up to ${h.confirmed ?? "nothing"}); ` +
              `a slot on the target could not stream them, so the cutover falls back: start the consumer (it reads them on the source), then ResumeMigration`,
          );
        }
      }
      Object.assign(r, {
        receivedLsn: finalLsn,
        confirmedFlushLsn: h.confirmed ?? r.confirmedFlushLsn,
        streamStoppedAt: r.streamStoppedAt ?? now,
      });
    }
    const endLsn = (await c.query<{ l: string }>("select pg_current_wal_lsn()::text as l")).rows[0]!.l;
    // No reader saw WAL past this point: the target's slots must start above it. Persisted by the step's transition.
    await stage(ctx, "PAUSED", "source", {
      drainToLsn: finalLsn,
      readersEndedAt: ctx.state.cdc?.readersEndedAt ?? endLsn,
    });
    return `${list.length} logical slot(s) handed over at ${finalLsn} and recorded: ${recs.map((r) => `${r.slotName} sent ${r.receivedLsn}`).join(", ")}`;
  });
}

/**
 * CDC_RESTORE, after promotion and before any traffic reaches the target:
 * the target's WAL is moved past everything consumers saw on the source, then
 * each slot is created there with its name and plugin, its consistent point
 * recorded, and consumers told to resume against the target.
 */
export async function restoreOnTarget(ctx: CdcContext): Promise<string> {
  const recs = ctx.state.cdcSlots ?? [];
  // Done already (it runs alongside reverse replication's start, right after promotion).
  if (ctx.state.cdc?.stage === "ON_TARGET" && recs.every((r) => r.targetConsistentLsn)) {
    return recs.length === 0
      ? "no logical slots to restore"
      : `logical slot(s) on ${ctx.target.id}: ${names(ctx.state).join(", ")}`;
  }
  if (!coordinating(ctx.spec) || recs.length === 0)
    return recs.length === 0 ? "no logical slots to restore" : "logical slots left to the operator (CDC_MODE_IGNORE)";
  // Above everything a consumer saw on the source: a consumer resumes from its own last LSN.
  const floor = lsnMax(
    ...[
      ctx.state.finalLsn,
      ctx.state.cdc?.readersEndedAt,
      ...recs.flatMap((r) => [r.confirmedFlushLsn, r.receivedLsn]),
    ].filter((x): x is string => !!x),
  );
  let discontinuous = false;
  for (const db of new Set(recs.map((r) => r.database))) {
    // Publications are catalog and came over with physical replication: checked rather than trusted, on the same connection.
    const mine = recs.filter((r) => r.database === db);
    const { at, continuous } = await restoreSlotsIn(
      ctx.provider,
      ctx.target,
      db,
      mine.map((r) => ({ name: r.slotName, plugin: r.plugin, publications: r.publications })),
      floor,
      ctx.state.finalLsn ?? floor,
    );
    discontinuous ||= !continuous;
    for (const r of mine) r.targetConsistentLsn = at.get(r.slotName);
  }
  if (discontinuous) {
    ctx.state.checks = mergeChecks(ctx.state.checks ?? [], [
      check("cdc.lsn_continuity", "WARN", {
        measured: `${ctx.target.id}'s WAL positions are below ${ctx.source.id}'s final LSN ${ctx.state.finalLsn}`,
        threshold: "the target continues the source's positions",
        message:
          "the promoted target counts WAL positions apart from the source (Aurora need not continue them): consumers' stored positions mean nothing there",
        remedy:
          "CDC consumers must resume at their directive's resume_from_lsn (reanchor); one resuming from its own stored position would skip changes",
      }),
    ]);
  }
  const how = discontinuous
    ? `; ${ctx.target.id}'s WAL positions do not continue ${ctx.source.id}'s (below its final LSN ${ctx.state.finalLsn}): consumers re-anchor at the slot's position (directive reanchor), not at their own last position`
    : "";
  await setStage(
    ctx,
    "ON_TARGET",
    "target",
    { awaitingReaders: true, ...(discontinuous ? { lsnDiscontinuous: true } : {}) },
    `CDC slots ${names(ctx.state).join(", ")} recreated on ${ctx.target.id}; consumers resume there${how}`,
  );
  return `${recs.length} logical slot(s) recreated on ${ctx.target.id} (${recs.map((r) => `${r.slotName} at ${r.targetConsistentLsn}`).join(", ")}); consumers resume there${how}`;
}

/**
 * At finalize: the source's slots, kept since cutover so that a rollback
 * could stream from them what consumers had not read on the target, are
 * released (they would retain WAL for nobody). Verified gone.
 */
export async function releaseSourceSlots(ctx: CdcContext): Promise<void> {
  if (ctx.state.cdc?.side !== "target") return;
  const list = names(ctx.state);
  await unlessGone(dropSlots(ctx.provider, ctx.source, list));
  const left = await unlessGone(logicalSlots(ctx.provider, ctx.source));
  const still = (left ?? []).filter((s) => list.includes(s.name));
  if (still.length > 0)
    throw new FailedPreconditionError(
      `slot(s) ${still.map((s) => s.name).join(", ")} are still on ${ctx.source.id}: a reader holds them`,
    );
}

/**
 * After consumers were moved (cutover or rollback): notes which slots a
 * reader took on the new side and when, closing the pause once all did, and
 * how much WAL the slots kept on the source hold back there. Cheap; called
 * while VERIFYING and, after it, periodically. Returns true when it changed
 * the state.
 */
export async function observeReaders(ctx: CdcContext): Promise<boolean> {
  const cdc = ctx.state.cdc;
  const recs = ctx.state.cdcSlots ?? [];
  if (!cdc || !coordinating(ctx.spec) || recs.length === 0) return false;
  let changed = false;
  if (cdc.awaitingReaders) {
    const side = cdc.side === "target" ? ctx.target : ctx.source;
    const reading = (await unlessGone(readSlots(ctx.provider, side, names(ctx.state)))) ?? [];
    const now = new Date().toISOString();
    for (const r of recs.filter((x) => reading.includes(x.slotName) && !x.streamResumedAt)) {
      r.streamResumedAt = now;
      changed = true;
    }
    if (recs.every((r) => r.streamResumedAt)) {
      recordPauseLength(ctx);
      cdc.awaitingReaders = false;
      changed = true;
    }
  }
  if (cdc.side === "target") {
    const held = await unlessGone(retainedWal(ctx.provider, ctx.source, names(ctx.state)));
    for (const r of recs) {
      const b = held?.get(r.slotName)?.toString();
      if (b !== r.retainedWalBytes) {
        r.retainedWalBytes = b;
        changed = true;
      }
    }
  }
  return changed;
}

/**
 * Rollback, with the target fenced and its writes applied to the source.
 * Nothing waits on a consumer: a connected one is let receive what is left
 * of the target's stream (milliseconds), one that is not is taken at what it
 * confirmed. Each source slot, kept since cutover, is then moved to just
 * past the target's transactions its consumer already has, which reverse
 * replication applied to the source: it streams the rest from there, once.
 * The target's slots are dropped. Returns a WARN when the target could not
 * be read (its consumers may see some changes twice, never lose one).
 */
export async function rollbackSlots(ctx: CdcContext, remainingMs: number): Promise<CheckResult | undefined> {
  const recs = ctx.state.cdcSlots ?? [];
  if (!coordinating(ctx.spec) || recs.length === 0) return undefined;
  const list = names(ctx.state);
  let warning: CheckResult | undefined;
  if (ctx.state.cdc?.side === "target") {
    // Only a target that no longer exists counts as gone; one that does not answer now is retried.
    const targetEnd = await unlessGone(ctx.provider.currentLsn(ctx.target));
    if (ctx.state.cdc.stage === "ON_TARGET") {
      await setStage(
        ctx,
        "DRAINING",
        "target",
        { drainToLsn: targetEnd ?? "", awaitingReaders: false },
        `rolling back: CDC consumers of ${list.join(", ")} told to confirm ${targetEnd ?? "what they have"} on ${ctx.target.id} and pause`,
      );
    }
    const now = new Date().toISOString();
    if (!targetEnd) {
      // Gone: what its consumers read there is unknown; from where they were moved to it, they may see some twice but lose nothing.
      for (const r of recs) {
        r.readOnTargetLsn ??= r.targetConsistentLsn;
        r.streamStoppedAt = now;
        r.streamResumedAt = undefined;
      }
      warning = check("cdc.rollback_drain", "WARN", {
        measured: `${ctx.target.id} unreachable`,
        threshold: "every consumer's position on the target known",
        message: "the target did not answer, so what its CDC consumers had read there is unknown",
        remedy:
          "they stream the target's changes again from the source from where they moved to the target: expect some twice downstream, none missing",
      });
    } else if (recs.some((r) => !r.readOnTargetLsn)) {
      const pending = recs.filter((r) => !r.readOnTargetLsn).map((r) => r.slotName);
      let handed: HandedOver[];
      try {
        handed = await waitSent(
          ctx.provider,
          ctx.target,
          pending,
          targetEnd,
          handoverMs(ctx.spec, remainingMs),
          ctx.signal,
        );
      } catch (e) {
        if (!(e instanceof DeadlineExceededError)) throw e;
        // Not waited for: taken at what it confirmed, it may see again what it had been sent since.
        handed = (await logicalSlots(ctx.provider, ctx.target))
          .filter((s) => pending.includes(s.name))
          .map((s) => ({ name: s.name, database: s.database, confirmed: s.confirmedFlushLsn, sent: null }));
        warning = check("cdc.rollback_drain", "WARN", {
          measured: e.rawMessage,
          threshold: `every connected consumer sent ${targetEnd} on ${ctx.target.id} within ${handoverMs(ctx.spec, remainingMs)} ms`,
          message: "a CDC consumer read the target too slowly to be handed over; it is moved at what it confirmed",
          remedy:
            "it may see again, from the source, changes it had been sent but not confirmed on the target: nothing is missing",
        });
      }
      for (const h of handed) {
        const r = recs.find((x) => x.slotName === h.name)!;
        r.readOnTargetLsn = h.sent ?? h.confirmed ?? r.targetConsistentLsn;
        r.streamStoppedAt = now;
        r.streamResumedAt = undefined;
      }
      // Positions first, then the readers ended: a crash in between finds them on record.
      await ctx.note(
        `CDC streams of ${handed.map((h) => `${h.name} (read up to ${h.sent ?? h.confirmed} on ${ctx.target.id})`).join(", ")} handed over`,
      );
    }
    await unlessGone(endReaders(ctx.provider, ctx.target, list));
    // No reader saw anything of the target past this point (it is fenced): a consumer's own last position is below it.
    const seenAtMost = await unlessGone(ctx.provider.currentLsn(ctx.target));
    const at = await putBackOnSource(ctx, seenAtMost);
    await setStage(
      ctx,
      "PAUSED",
      "source",
      { drainToLsn: at },
      `CDC slots ${list.join(", ")} put back on ${ctx.source.id}: ${placesText(recs)}`,
    );
  }
  // Only a target that is gone may keep them (it takes no writes, so they retain nothing new).
  await unlessGone(dropSlots(ctx.provider, ctx.target, list));
  return warning;
}

function placesText(recs: CdcSlotRecord[]): string {
  return recs
    .map(
      (r) =>
        `${r.slotName} at ${r.sourceResumeLsn} (${r.toStreamFromSource ?? 0} transaction(s) of the target to stream)`,
    )
    .join(", ");
}

/**
 * Each slot kept on the source moved past the target's transactions its
 * consumer read there (reverse replication put them on the source, each
 * carrying the target's commit position as its origin); a slot that is not
 * there any more is made again at the source's position now. Then the
 * source's WAL is moved, with records nothing decodes, past every position a
 * consumer confirmed on the target: one that resumes from its own last
 * position skips nothing written on the source from now on.
 */
async function putBackOnSource(ctx: CdcContext, seenAtMost: string | undefined): Promise<string> {
  const recs = ctx.state.cdcSlots ?? [];
  const kept = new Set((await logicalSlots(ctx.provider, ctx.source)).map((s) => s.name));
  // Reverse replication's publication is in every database it covers, and only there.
  const reverse = new Set(ctx.state.reverseDatabases ?? []);
  for (const r of recs) {
    if (r.sourceResumeLsn && r.toStreamFromSource !== undefined) continue;
    if (kept.has(r.slotName) && reverse.has(r.database) && r.readOnTargetLsn) {
      const from = r.receivedLsn ?? r.confirmedFlushLsn;
      const pos = await positionForTargetProgress(
        ctx.provider,
        ctx.source,
        r.database,
        r.slotName,
        from,
        r.readOnTargetLsn,
        REVERSE_PUBLICATION,
      );
      r.sourceResumeLsn = await advanceSlot(ctx.provider, ctx.source, r.database, r.slotName, pos.lsn);
      r.toStreamFromSource = pos.toStream;
    } else {
      r.sourceResumeLsn = await repositionSlot(
        ctx.provider,
        ctx.source,
        r.database,
        r.slotName,
        r.plugin,
        await ctx.provider.currentLsn(ctx.source),
      );
      r.toStreamFromSource = 0;
    }
  }
  // Positions of a target that counts in a space of its own mean nothing here: consumers re-anchor (directive reanchor).
  const seen = ctx.state.cdc?.lsnDiscontinuous
    ? []
    : [seenAtMost, ...recs.map((r) => r.readOnTargetLsn)].filter((x): x is string => !!x);
  return seen.length > 0 ? skipWalTo(ctx.provider, ctx.source, lsnMax(...seen)) : ctx.provider.currentLsn(ctx.source);
}

/**
 * Before the source takes writes again after a fallback (nothing was
 * promoted): slots whose streams were handed over are moved to what their
 * consumers had been sent, so they do not see it twice.
 */
export async function settleOnSource(ctx: CdcContext): Promise<void> {
  if (ctx.state.cdc?.side !== "source" || !isPausedStage(ctx.state.cdc.stage)) return;
  const kept = new Map((await logicalSlots(ctx.provider, ctx.source)).map((s) => [s.name, s]));
  for (const r of ctx.state.cdcSlots ?? []) {
    const s = kept.get(r.slotName);
    if (!r.receivedLsn || !s || s.active) continue;
    r.sourceResumeLsn = await advanceSlot(ctx.provider, ctx.source, r.database, r.slotName, r.receivedLsn);
  }
}

/**
 * Ends the watch for readers on the new side when a migration leaves the
 * phases that keep watching (a rollback ends in ROLLED_BACK): the pause is
 * recorded as it stands, naming any slot nobody reads yet (its position is
 * kept: nothing is skipped when its consumer returns).
 */
export function closeReaderWatch(ctx: CdcContext): void {
  if (!ctx.state.cdc?.awaitingReaders) return;
  recordPauseLength(ctx);
  ctx.state.cdc.awaitingReaders = false;
}

/**
 * Consumers read the source again: after a rollback, or a fallback before
 * promotion. With `watch`, the caller looks for their readers (the pause
 * lasts until they are seen); without, the pause ends now.
 */
export async function resumeOnSource(ctx: CdcContext, opts: { watch?: boolean } = {}): Promise<void> {
  const stage = ctx.state.cdc?.stage;
  if (!stage || (stage === "ON_SOURCE" && ctx.state.cdc?.resumed)) return;
  if (!opts.watch) recordPauseLength(ctx);
  await setStage(
    ctx,
    "ON_SOURCE",
    "source",
    { resumed: true, awaitingReaders: opts.watch === true },
    `CDC consumers of ${names(ctx.state).join(", ")} resume on ${ctx.source.id}`,
  );
}

/** Puts on the migration's checks how long consumers were paused in the stretch that ends now, against the alert threshold. */
function recordPauseLength(ctx: CdcContext): void {
  const since = ctx.state.cdc?.pausedSince;
  if (!since) return;
  // What consumers experienced: from their stream's end on one side to a reader on the other.
  const each = (ctx.state.cdcSlots ?? []).map((r) => ({
    name: r.slotName,
    ms: Date.parse(r.streamResumedAt ?? new Date().toISOString()) - Date.parse(r.streamStoppedAt ?? since),
  }));
  const ms = Math.max(0, ...each.map((e) => e.ms));
  const waiting = (ctx.state.cdcSlots ?? []).filter((r) => !r.streamResumedAt).map((r) => r.slotName);
  const limit = pauseAlertMs(ctx.spec);
  const result = check("cdc.paused", ms > limit ? "WARN" : "PASS", {
    measured:
      `consumers' streams stopped for up to ${ms} ms (${each.map((e) => `${e.name}: ${e.ms} ms`).join(", ")}), from their last change on one side to a reader on the other` +
      (waiting.length > 0 ? `; no reader yet for ${waiting.join(", ")} (its position is kept)` : ""),
    threshold: `at most ${limit} ms (cdc_policy.pause_alert_after)`,
    message:
      ms > limit ? "CDC consumers stayed paused longer than the alert threshold" : "CDC consumers paused only briefly",
    remedy: ms > limit ? "downstream systems saw a gap in their change streams; check their freshness alarms" : "",
  });
  ctx.state.checks = mergeChecks(ctx.state.checks ?? [], [result]);
}

/**
 * The alert while consumers are still paused: once per stretch, when the
 * pause outlasts cdc_policy.pause_alert_after. The caller persists it.
 */
export function pauseAlert(spec: MigrationSpec, state: MigrationStateJson, now = Date.now()): CheckResult | undefined {
  const since = pausedSince(state);
  if (!since || state.cdc!.alerted) return undefined;
  const ms = now - since.getTime();
  const limit = pauseAlertMs(spec);
  if (ms <= limit) return undefined;
  state.cdc!.alerted = true;
  return check("cdc.paused", "WARN", {
    measured: `consumers of ${names(state).join(", ")} paused for ${ms} ms and counting`,
    threshold: `at most ${limit} ms (cdc_policy.pause_alert_after)`,
    message: "CDC consumers have been paused longer than the alert threshold",
    remedy:
      "see why the migration is not moving (its last error and phase); roll back to let consumers resume on the source",
  });
}
