import { policyOf } from "../domain/spec.js";
import { check, mergeChecks, type CheckResult } from "../domain/check.js";
import { DeadlineExceededError, FailedPreconditionError, unlessGone } from "../domain/errors.js";
import { CdcMode, type MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import { lsnMax } from "../domain/lsn.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import type { CdcSlotRecord, CdcStage, CdcStateJson, MigrationStateJson } from "../domain/state.js";
import {
  drainAndEndReaders,
  dropSlots,
  endReaders,
  fillWalTo,
  logicalSlots,
  publications,
  repositionSlot,
  restoreSlotsIn,
  waitConfirmed,
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
const drainTimeout = (spec: MigrationSpec) => policyOf(spec).drainTimeoutMs;
const pauseAlertMs = (spec: MigrationSpec) => policyOf(spec).pauseAlertAfterMs;
const names = (state: MigrationStateJson) => (state.cdcSlots ?? []).map((s) => s.slotName);

async function records(ctx: CdcContext, slots: LogicalSlot[], opts: { publications: "read" | "keep" } = { publications: "read" }): Promise<CdcSlotRecord[]> {
  const prev = new Map((ctx.state.cdcSlots ?? []).map((r) => [r.slotName, r]));
  const pubs = new Map<string, string[]>();
  for (const db of new Set(slots.map((s) => s.database))) {
    // Inside the cutover window the publications read moments ago stand: the source takes no DDL while fenced.
    const known = opts.publications === "keep" ? [...prev.values()].find((r) => r.database === db)?.publications : undefined;
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

const pausedStage = (stage: CdcStage | undefined) => stage === "DRAINING" || stage === "PAUSED";

/** Since when the migration's CDC consumers are paused; undefined while they read. */
export function pausedSince(state: MigrationStateJson): Date | undefined {
  return state.cdc?.pausedSince && pausedStage(state.cdc.stage) ? new Date(state.cdc.pausedSince) : undefined;
}

async function setStage(ctx: CdcContext, stage: CdcStage, side: "source" | "target", extra: Partial<CdcStateJson>, message: string): Promise<void> {
  const paused = pausedStage(stage);
  const prev = ctx.state.cdc;
  const wasPaused = pausedStage(prev?.stage);
  ctx.state.cdc = {
    stage,
    side,
    since: new Date().toISOString(),
    endpoint: await ctx.provider.endpoint(side === "source" ? ctx.source : ctx.target),
    // A pause that carries on (draining, then paused) keeps counting from its start.
    pausedSince: paused ? ((wasPaused ? prev?.pausedSince : undefined) ?? new Date().toISOString()) : undefined,
    alerted: paused && wasPaused ? prev?.alerted : undefined,
    ...extra,
  };
  await ctx.note(message);
}

/**
 * CDC_PREPARE, with the source fenced and its final LSN known: every logical
 * slot's consumer confirms the final LSN (nothing is left unread), then its
 * walsender is ended and the slot's position recorded. A consumer that does
 * not drain in time fails the step for good, and the engine unfences the source.
 */
export async function drainAndPause(ctx: CdcContext, finalLsn: string, remainingMs: number): Promise<string> {
  const slots = await logicalSlots(ctx.provider, ctx.source);
  if (!coordinating(ctx.spec)) {
    ctx.state.cdcSlots = await records(ctx, slots);
    return `${slots.length} logical slot(s) on record; their consumers are the operator's (CDC_MODE_IGNORE)`;
  }
  if (slots.length === 0) {
    ctx.state.cdcSlots = [];
    return "no logical slots to coordinate";
  }
  if (ctx.state.cdc?.stage !== "DRAINING" && ctx.state.cdc?.stage !== "PAUSED") {
    ctx.state.cdcSlots = await records(ctx, slots, { publications: "keep" });
    await setStage(
      ctx,
      "DRAINING",
      "source",
      { drainToLsn: finalLsn, resumed: false },
      `CDC consumers of ${names(ctx.state).join(", ")} told to confirm ${finalLsn} and pause`,
    );
  }
  const list = names(ctx.state);
  const timeout = Math.max(1, Math.min(drainTimeout(ctx.spec), remainingMs));
  let drained: { slots: LogicalSlot[]; endLsn: string };
  try {
    drained = await drainAndEndReaders(ctx.provider, ctx.source, list, finalLsn, timeout, ctx.signal);
  } catch (e) {
    if (!(e instanceof DeadlineExceededError)) throw e;
    // While we wait, the source takes no writes: no retry, fall back at once.
    throw new FailedPreconditionError(
      `${e.rawMessage}; start or speed up those consumers, raise cdc_policy.drain_timeout, or drop slots nobody reads (DropInactiveSlot)`,
    );
  }
  ctx.state.cdcSlots = await records(ctx, drained.slots, { publications: "keep" });
  // No reader saw WAL past this point: the target's slots must start above it.
  await setStage(
    ctx,
    "PAUSED",
    "source",
    { drainToLsn: finalLsn, readersEndedAt: drained.endLsn },
    `CDC consumers of ${list.join(", ")} drained to ${finalLsn} and paused; positions recorded`,
  );
  return `${list.length} logical slot(s) drained to ${finalLsn}, paused and recorded: ${list.join(", ")}`;
}

/**
 * CDC_RESTORE, after promotion and before any traffic reaches the target:
 * the target's WAL is moved past everything consumers saw on the source, then
 * each slot is created there with its name and plugin, its consistent point
 * recorded, and consumers told to resume against the target.
 */
export async function restoreOnTarget(ctx: CdcContext): Promise<string> {
  const recs = ctx.state.cdcSlots ?? [];
  if (!coordinating(ctx.spec) || recs.length === 0)
    return recs.length === 0 ? "no logical slots to restore" : "logical slots left to the operator (CDC_MODE_IGNORE)";
  // Above everything a consumer saw on the source: a consumer resumes from its own last LSN.
  const floor = lsnMax(...[ctx.state.finalLsn, ctx.state.cdc?.readersEndedAt, ...recs.map((r) => r.confirmedFlushLsn)].filter((x): x is string => !!x));
  for (const db of new Set(recs.map((r) => r.database))) {
    // Publications are catalog and came over with physical replication: checked rather than trusted, on the same connection.
    const mine = recs.filter((r) => r.database === db);
    const at = await restoreSlotsIn(
      ctx.provider,
      ctx.target,
      db,
      mine.map((r) => ({ name: r.slotName, plugin: r.plugin, publications: r.publications })),
      floor,
    );
    for (const r of mine) r.targetConsistentLsn = at.get(r.slotName);
  }
  recordPauseLength(ctx);
  await setStage(ctx, "ON_TARGET", "target", {}, `CDC slots ${names(ctx.state).join(", ")} recreated on ${ctx.target.id}; consumers resume there`);
  return `${recs.length} logical slot(s) recreated on ${ctx.target.id} (${recs.map((r) => `${r.slotName} at ${r.targetConsistentLsn}`).join(", ")}); consumers resume there`;
}

/** After cutover: the source's slots would retain WAL for consumers that read the target now. */
export async function releaseSourceSlots(ctx: CdcContext): Promise<void> {
  if (ctx.state.cdc?.stage === "ON_TARGET") await dropSlots(ctx.provider, ctx.source, names(ctx.state));
}

/**
 * Rollback, with the target fenced and its writes applied to the source: if
 * consumers read the target, they drain it; the source's WAL is moved past
 * what they saw there and each source slot put at the source's position now,
 * so the writes they already read (which reverse replication put on the
 * source) are not streamed twice. Slots on the target are dropped.
 * Returns a WARN when a consumer did not drain in time.
 */
export async function rollbackSlots(ctx: CdcContext, remainingMs: number): Promise<CheckResult | undefined> {
  const recs = ctx.state.cdcSlots ?? [];
  if (!coordinating(ctx.spec) || recs.length === 0) return undefined;
  const list = names(ctx.state);
  let warning: CheckResult | undefined;
  if (ctx.state.cdc?.side === "target") {
    // Only a target that no longer exists counts as gone; one that does not answer now is retried.
    const targetEnd = await unlessGone(ctx.provider.currentLsn(ctx.target));
    if (!targetEnd) {
      // A target that is gone cannot be drained; the source still gets its slots back.
      const at = await putBackOnSource(ctx);
      await setStage(
        ctx,
        "PAUSED",
        "source",
        { drainToLsn: at },
        `CDC slots ${list.join(", ")} put back on ${ctx.source.id} at ${at}; ${ctx.target.id} did not answer`,
      );
      return check("cdc.rollback_drain", "WARN", {
        measured: `${ctx.target.id} unreachable`,
        threshold: `every consumer confirms the target's last position`,
        message: "the target did not answer, so its CDC consumers could not be drained",
        remedy: "changes committed on the target that a consumer had not read will not be streamed to it; compare downstream with the source's tables",
      });
    }
    if (ctx.state.cdc.stage === "ON_TARGET") {
      await setStage(
        ctx,
        "DRAINING",
        "target",
        { drainToLsn: targetEnd },
        `rolling back: CDC consumers of ${list.join(", ")} told to confirm ${targetEnd} on ${ctx.target.id} and pause`,
      );
    }
    const drainTo = ctx.state.cdc.drainToLsn ?? targetEnd;
    try {
      await waitConfirmed(ctx.provider, ctx.target, list, drainTo, Math.max(1, Math.min(drainTimeout(ctx.spec), remainingMs)), ctx.signal);
    } catch (e) {
      if (!(e instanceof DeadlineExceededError)) throw e;
      // Traffic goes back regardless; say exactly what the late consumer misses.
      warning = check("cdc.rollback_drain", "WARN", {
        measured: e.rawMessage,
        threshold: `every consumer confirms ${drainTo} on ${ctx.target.id}`,
        message: "a CDC consumer had not read all the target's changes when the rollback moved it back to the source",
        remedy:
          "the changes it had not confirmed are on the source's tables (reverse replication applied them) but will not be streamed to it; re-read them from there",
      });
    }
    await endReaders(ctx.provider, ctx.target, list);
    const seen = (await logicalSlots(ctx.provider, ctx.target))
      .filter((s) => list.includes(s.name))
      .map((s) => s.confirmedFlushLsn)
      .filter((x): x is string => !!x);
    await fillWalTo(ctx.provider, ctx.source, lsnMax(drainTo, ...seen));
    const at = await putBackOnSource(ctx);
    await setStage(ctx, "PAUSED", "source", { drainToLsn: drainTo }, `CDC slots ${list.join(", ")} put back on ${ctx.source.id} at ${at}`);
  }
  // Only a target that is gone may keep them (it takes no writes, so they retain nothing new).
  await unlessGone(dropSlots(ctx.provider, ctx.target, list));
  return warning;
}

/** Each slot on the source at the source's position now (its WAL already past what consumers saw elsewhere); returns that position. */
async function putBackOnSource(ctx: CdcContext): Promise<string> {
  const at = await ctx.provider.currentLsn(ctx.source);
  for (const r of ctx.state.cdcSlots ?? []) r.sourceResumeLsn = await repositionSlot(ctx.provider, ctx.source, r.database, r.slotName, r.plugin, at);
  return at;
}

/** Consumers read the source again: after a rollback, or a fallback before promotion. */
export async function resumeOnSource(ctx: CdcContext): Promise<void> {
  const stage = ctx.state.cdc?.stage;
  if (!stage || (stage === "ON_SOURCE" && ctx.state.cdc?.resumed)) return;
  recordPauseLength(ctx);
  await setStage(ctx, "ON_SOURCE", "source", { resumed: true }, `CDC consumers of ${names(ctx.state).join(", ")} resume on ${ctx.source.id}`);
}

/** Puts on the migration's checks how long consumers were paused in the stretch that ends now, against the alert threshold. */
function recordPauseLength(ctx: CdcContext): void {
  const since = ctx.state.cdc?.pausedSince;
  if (!since) return;
  const ms = Date.now() - Date.parse(since);
  const limit = pauseAlertMs(ctx.spec);
  const result = check("cdc.paused", ms > limit ? "WARN" : "PASS", {
    measured: `consumers paused for ${ms} ms`,
    threshold: `at most ${limit} ms (cdc_policy.pause_alert_after)`,
    message: ms > limit ? "CDC consumers stayed paused longer than the alert threshold" : "CDC consumers paused only briefly",
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
    remedy: "see why the migration is not moving (its last error and phase); roll back to let consumers resume on the source",
  });
}
