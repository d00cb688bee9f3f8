import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  CutoverTimingSchema,
  ReplicationStatusSchema,
  CdcSlotPositionSchema,
  ReverseReplicationStatusSchema,
  CdcSlotStage,
  CheckResultSchema,
  CheckStatus,
  EventType,
  MigrationEventSchema,
  MigrationSchema,
  PhaseTransitionSchema,
  type Migration,
  type MigrationEvent,
  type PhaseTransition,
} from "../gen/migration/v1/migration_pb.js";
import { isPhaseName, phaseToProto, type PhaseName } from "../domain/phases.js";
import type { EventRow, MigrationRow } from "../store/migration-repo.js";
import type { CheckResult } from "../domain/check.js";
import { specFromJson } from "../domain/spec.js";
import { drainEstimateMs } from "../domain/rollback-readiness.js";
import type { CutoverTimingJson, ReverseStatusJson } from "../domain/state.js";

function phaseOrUnspecified(p: string | null): number {
  return p && isPhaseName(p) ? phaseToProto(p) : 0;
}

export function transitionFromEvent(e: EventRow): PhaseTransition {
  return create(PhaseTransitionSchema, {
    from: phaseOrUnspecified(e.phase_from),
    to: phaseOrUnspecified(e.phase_to),
    at: timestampFromDate(e.at),
    actor: e.actor,
    reason: e.message,
  });
}

export function checkToProto(c: CheckResult) {
  return create(CheckResultSchema, {
    name: c.name,
    status: CheckStatus[c.status],
    measured: c.measured,
    threshold: c.threshold,
    message: c.message,
    remedy: c.remedy,
    at: timestampFromDate(new Date(c.at)),
  });
}

/** `watchers`: slot name -> consumer ids following its directives now, when known. */
export function migrationToProto(row: MigrationRow, history: EventRow[], watchers?: Map<string, string[]>): Migration {
  const state = row.state;
  return create(MigrationSchema, {
    id: row.id,
    requestId: row.request_id ?? "",
    spec: specFromJson(row.spec),
    phase: phaseToProto(row.phase as PhaseName),
    paused: row.paused,
    cutoverApproved: row.cutover_approved,
    history: history.filter((e) => e.migration_id === row.id).map(transitionFromEvent),
    checks: (state.checks ?? []).map(checkToProto),
    cdcSlots: (state.cdcSlots ?? []).map((c) =>
      create(CdcSlotPositionSchema, {
        slotName: c.slotName,
        plugin: c.plugin,
        database: c.database,
        confirmedFlushLsn: c.confirmedFlushLsn,
        restartLsn: c.restartLsn,
        active: c.active,
        targetConsistentLsn: c.targetConsistentLsn ?? "",
        recordedAt: timestampFromDate(new Date(c.recordedAt)),
        stage: state.cdc ? CdcSlotStage[state.cdc.stage] : CdcSlotStage.ON_SOURCE,
        consumer: c.consumer ?? "",
        publications: c.publications ?? [],
        sourceResumeLsn: c.sourceResumeLsn ?? "",
        watchingConsumers: watchers?.get(c.slotName) ?? [],
        receivedLsn: c.receivedLsn ?? "",
        readOnTargetLsn: c.readOnTargetLsn ?? "",
        toStreamFromSource: c.toStreamFromSource ?? 0,
        streamStoppedAt: c.streamStoppedAt ? timestampFromDate(new Date(c.streamStoppedAt)) : undefined,
        streamResumedAt: c.streamResumedAt ? timestampFromDate(new Date(c.streamResumedAt)) : undefined,
        retainedWalBytes: BigInt(c.retainedWalBytes ?? "0"),
      }),
    ),
    cdcPausedSince: state.cdc?.pausedSince ? timestampFromDate(new Date(state.cdc.pausedSince)) : undefined,
    reverse: state.reverse ? reverseToProto(state.reverse) : undefined,
    replication: state.replication
      ? create(ReplicationStatusSchema, {
          state: state.replication.state,
          lagBytes: state.replication.lagBytes === null ? undefined : BigInt(state.replication.lagBytes),
          lag:
            state.replication.lagSeconds === null
              ? undefined
              : durationFromMs(Math.round(state.replication.lagSeconds * 1000)),
          walBytesPerSecond: state.replication.walBytesPerSec,
          sampledAt: timestampFromDate(new Date(state.replication.sampledAt)),
          windowHeld:
            state.replication.windowHeldMs === undefined
              ? undefined
              : durationFromMs(Math.round(state.replication.windowHeldMs)),
        })
      : undefined,
    cutover: timingToProto(state.cutover),
    rollback: timingToProto(state.rollback),
    lastError: state.lastError
      ? {
          code: state.lastError.code,
          message: state.lastError.message,
          phase: phaseToProto(state.lastError.phase),
          at: timestampFromDate(new Date(state.lastError.at)),
        }
      : undefined,
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
    createdBy: row.created_by,
  });
}

export function eventToProto(e: EventRow): MigrationEvent {
  const type = EventType[e.type as keyof typeof EventType] ?? EventType.UNSPECIFIED;
  const payload = e.payload as { check?: unknown; step?: string };
  return create(MigrationEventSchema, {
    sequence: BigInt(e.seq),
    migrationId: e.migration_id,
    type,
    at: timestampFromDate(e.at),
    actor: e.actor,
    message: e.message,
    transition: e.phase_to ? transitionFromEvent(e) : undefined,
    check: payload.check ? checkToProto(payload.check as CheckResult) : undefined,
    step: payload.step ?? "",
  });
}

function reverseToProto(r: ReverseStatusJson) {
  const estimate = drainEstimateMs(r);
  return create(ReverseReplicationStatusSchema, {
    lagBytes: BigInt(r.lagBytes),
    retainedBytes: BigInt(r.retainedBytes),
    applyBytesPerSecond: r.applyBytesPerSec ?? 0,
    rollbackDrainEstimate: estimate === undefined ? undefined : durationFromMs(estimate),
    sampledAt: timestampFromDate(new Date(r.sampledAt)),
    stoppedReason: r.stoppedReason ?? "",
  });
}

function timingToProto(t: CutoverTimingJson | undefined) {
  return t
    ? create(CutoverTimingSchema, {
        startedAt: timestampFromDate(new Date(t.startedAt)),
        endedAt: t.endedAt ? timestampFromDate(new Date(t.endedAt)) : undefined,
        window: t.windowMs === undefined ? undefined : durationFromMs(t.windowMs),
        outcome: t.outcome ?? "",
        parts: (t.parts ?? []).map((p) => ({
          name: p.name,
          phase: phaseToProto(p.phase),
          offset: durationFromMs(p.startMs),
          duration: durationFromMs(p.ms),
          failed: p.failed ?? false,
        })),
      })
    : undefined;
}
