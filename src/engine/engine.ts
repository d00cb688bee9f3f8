import { Code, ConnectError } from "@connectrpc/connect";
import { specFromJson, durationMs } from "../api/spec.js";
import { isTerminal, type PhaseName } from "../domain/phases.js";
import { DeadlineExceededError, FailedPreconditionError, LeaseLostError } from "../errors.js";
import { FailurePolicy, Provider as ProviderKind, type MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import type { InstanceRef, Provider } from "../providers/provider.js";
import type { Router } from "../routing/router.js";
import type { MigrationRepo, MigrationRow } from "../store/migration-repo.js";
import type { MigrationStateJson } from "../store/schema.js";
import type { Logger } from "../telemetry/log.js";
import type { ServiceMetrics } from "../telemetry/metrics.js";
import { mergeChecks } from "../checks/check.js";
import { sleep } from "./sleep.js";
import { drainReverseReplication, stopReverseReplication } from "../replication/reverse.js";
import type { Lease, Leases } from "./lease.js";
import { cdcContext, DEFAULT_DEADLINES, STEPS, type Outcome, type StepEnv } from "./steps.js";
import { pauseAlert, pausedSince, resumeOnSource, rollbackSlots } from "../cdc/coordinator.js";
import { BEFORE_PROMOTION, BEFORE_QUIESCING, CUTOVER_WINDOW, FENCED_BEFORE_PROMOTION, FORWARD } from "./transitions.js";

export interface EngineDeps {
  repo: MigrationRepo;
  leases: Leases;
  providers: (kind: ProviderKind) => Provider;
  router: Router;
  log: Logger;
  /** How often to look for migrations nobody drives. */
  tickMs?: number;
  metrics?: ServiceMetrics;
}

const ENGINE = "engine";
/** Codes that no retry can fix: the failure policy applies at once. */
const PERMANENT = new Set([Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.PermissionDenied, Code.Unimplemented]);


function errorInfo(e: unknown): { code: string; message: string; permanent: boolean } {
  const ce = ConnectError.from(e);
  return { code: Code[ce.code] ?? "Unknown", message: ce.rawMessage, permanent: PERMANENT.has(ce.code) };
}

/**
 * Drives migrations. Each replica of the service runs one; a migration is
 * driven by the replica that holds its lease, one step at a time, every
 * transition written under that lease.
 */
export class Engine {
  private readonly driving = new Map<string, Promise<void>>();
  private readonly attempts = new Map<string, number>();
  private readonly stopping = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(private readonly deps: EngineDeps) {}

  start(): void {
    const tick = () => {
      if (this.ticking || this.stopping.signal.aborted) return;
      this.ticking = true;
      this.tick()
        .catch((e: unknown) => this.deps.log.warn("engine tick failed", { error: String(e) }))
        .finally(() => (this.ticking = false));
    };
    this.timer = setInterval(tick, this.deps.tickMs ?? 500);
    tick();
  }

  /** Stops driving; leases are released so another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.driving.values()]);
  }

  /** Ids this replica drives right now (for tests and status). */
  drivenIds(): string[] {
    return [...this.driving.keys()];
  }

  private async tick(): Promise<void> {
    for (const id of await this.deps.repo.activeIds()) {
      if (this.driving.has(id) || this.stopping.signal.aborted) continue;
      const lease = await this.deps.leases.acquire(`migration:${id}`);
      if (!lease) continue;
      this.driving.set(
        id,
        this.drive(id, lease).finally(() => this.driving.delete(id)),
      );
    }
  }

  private async drive(id: string, lease: Lease): Promise<void> {
    const log = this.deps.log.child({ migration: id, token: lease.token });
    const lost = new AbortController();
    const signal = AbortSignal.any([lost.signal, this.stopping.signal]);
    const renew = setInterval(() => {
      this.deps.leases.renew(lease).then(
        (ok) => {
          if (!ok) lost.abort();
        },
        () => lost.abort(),
      );
    }, Math.max(100, this.deps.leases.ttlMs / 3));
    log.info("driving");
    try {
      while (!signal.aborted) {
        const next = await this.advance(id, lease, signal, log);
        if (next === "done") break;
        await sleep(next, signal);
      }
    } catch (e) {
      if (e instanceof LeaseLostError) log.warn("lease lost; another replica drives this migration now", { error: e.rawMessage });
      else log.error("driver failed", { error: String(e) });
    } finally {
      clearInterval(renew);
      if (!lost.signal.aborted) await this.deps.leases.release(lease).catch(() => {});
    }
  }

  /** One decision: act on an operator's request, or run the phase's step. Returns "done" or ms to wait. */
  private async advance(id: string, lease: Lease, signal: AbortSignal, log: Logger): Promise<"done" | number> {
    const { repo } = this.deps;
    const row = await repo.get(id);
    if (isTerminal(row.phase)) {
      this.deps.metrics?.cdcPaused(id, "", undefined);
      return "done";
    }
    const spec = specFromJson(row.spec);
    const provider = this.deps.providers(spec.provider);
    const source: InstanceRef = { id: spec.source!.id, region: spec.source!.region || undefined };
    const target: InstanceRef = { id: spec.target!.id, region: spec.target!.region || undefined };
    const state: MigrationStateJson = structuredClone(row.state);
    const move = (to: PhaseName, reason: string, extra: { clearRequest?: boolean; paused?: boolean } = {}) =>
      repo.transition(lease, id, row.phase, to, ENGINE, reason, { state: { ...state, phaseEnteredAt: new Date().toISOString() }, ...extra });

    // Operator requests come first: they are why a long step yields.
    const action = this.operatorAction(row, state, provider, source, target);
    if (action) {
      const attemptKey = `${id}:${row.requested_action}`;
      try {
        const outcome = await action();
        this.attempts.delete(attemptKey);
        await move(outcome.to, outcome.reason, { clearRequest: outcome.to !== "ROLLING_BACK" });
        return isTerminal(outcome.to) ? "done" : 0;
      } catch (e) {
        if (e instanceof LeaseLostError || signal.aborted) throw e instanceof LeaseLostError ? e : new LeaseLostError("stopped");
        return this.retryLater(row, spec, lease, state, e, attemptKey, log);
      }
    }
    // An operator's pause that raced into the cutover window is not honoured there (writes are stopped); a hold of the failure policy is.
    const holding = !CUTOVER_WINDOW.includes(row.phase) || state.held?.phase === row.phase;
    if (row.paused && row.phase !== "ROLLING_BACK" && holding) return 500;
    delete state.held;
    if (row.phase === "COMPLETED") return 500;

    const step = row.phase === "ROLLING_BACK" ? this.rollbackStep(row, state) : STEPS[row.phase];
    if (!step) throw new FailedPreconditionError(`no step for phase ${row.phase}`);
    const deadline = this.deadlineMs(spec, row.phase);
    const entered = state.phaseEnteredAt ? Date.parse(state.phaseEnteredAt) : row.updated_at.getTime();
    const remainingMs = deadline === undefined ? 24 * 3600_000 : entered + deadline - Date.now();
    const attemptKey = `${id}:${row.phase}`;
    const env: StepEnv = {
      row, spec, provider, router: this.deps.router, source, target, signal, remainingMs, state,
      report: async (result) => {
        state.checks = mergeChecks(state.checks ?? [], [result]);
        await repo.record(lease, id, { type: "CHECK_RESULT", actor: ENGINE, message: result.message, payload: { check: result } }, state);
      },
      interrupted: async () => {
        const now = await repo.get(id);
        return now.paused || now.requested_action !== null;
      },
      note: async (message) => {
        await repo.record(lease, id, { type: "CDC", actor: ENGINE, message }, state);
      },
    };
    this.deps.metrics?.cdcPaused(id, spec.databaseName, pausedSince(state));
    const alert = pauseAlert(spec, state);
    if (alert) {
      log.warn("CDC consumers paused too long", { measured: alert.measured });
      this.deps.metrics?.cdcPauseAlert(id, spec.databaseName);
      await env.report(alert);
    }
    await this.recordIntent(id, row, lease, state);
    let outcome: Outcome;
    try {
      if (remainingMs <= 0) throw new DeadlineExceededError(`phase ${row.phase} ran past its deadline of ${deadline} ms`);
      outcome = await step(env);
    } catch (e) {
      if (e instanceof LeaseLostError || signal.aborted) throw e instanceof LeaseLostError ? e : new LeaseLostError("stopped");
      return this.onFailure(row, spec, lease, state, e, attemptKey, provider, source, target, log);
    }
    if ("waitMs" in outcome) return outcome.waitMs;
    this.attempts.delete(attemptKey);
    if (signal.aborted) return "done";
    await move(outcome.to, outcome.reason, outcome.to === "ROLLED_BACK" ? { clearRequest: true } : {});
    log.info("phase", { from: row.phase, to: outcome.to, reason: outcome.reason });
    return 0;
  }

  /**
   * The intent, once per phase and driver: that the step starts, or that a
   * new driver (after a crash or a takeover) resumes one another began, whose
   * side effects it checks rather than repeats.
   */
  private async recordIntent(id: string, row: MigrationRow, lease: Lease, state: MigrationStateJson): Promise<void> {
    const key = `intent:${row.phase}`;
    const prev = state.steps?.[key] as { at: string; token: string } | undefined;
    const token = String(lease.token);
    if (prev?.token === token) return;
    state.steps = { ...state.steps, [key]: { at: new Date().toISOString(), token } };
    const message = prev
      ? `${row.phase} resumed by a new driver (first started ${prev.at}); what it already did is checked, not repeated`
      : `${row.phase} started`;
    await this.deps.repo.record(lease, id, { type: "STEP_STARTED", actor: ENGINE, message, payload: { step: row.phase, resumed: !!prev } }, state);
  }

  /** The work an operator's pending request calls for in this phase, if any. */
  private operatorAction(row: MigrationRow, state: MigrationStateJson, provider: Provider, source: InstanceRef, target: InstanceRef): (() => Promise<{ to: PhaseName; reason: string }>) | undefined {
    if (row.requested_action === "abort" && BEFORE_QUIESCING.includes(row.phase)) {
      return async () => {
        await provider.deleteReplica(source, target);
        return { to: "ABORTED", reason: `aborted; ${target.id} removed, ${source.id} left as it was` };
      };
    }
    if (row.requested_action === "rollback" && row.phase !== "ROLLING_BACK") {
      return async () => {
        state.rollbackFrom = row.phase;
        return { to: "ROLLING_BACK", reason: `rollback requested in ${row.phase}` };
      };
    }
    if (row.requested_action === "finalize" && row.phase === "COMPLETED") {
      return async () => {
        // No slot may stay behind on the target retaining WAL for a source that is gone.
        await stopReverseReplication(provider, source, target);
        await provider.retire(source);
        return { to: "FINALIZED", reason: `${source.id} retired; reverse replication removed; the rollback window is closed` };
      };
    }
    return undefined;
  }

  /** Logs a failed attempt and returns the backoff before the next one. */
  private async retryLater(row: MigrationRow, spec: MigrationSpec, lease: Lease, state: MigrationStateJson, e: unknown, attemptKey: string, log: Logger): Promise<number> {
    const info = errorInfo(e);
    const attempt = (this.attempts.get(attemptKey) ?? 0) + 1;
    this.attempts.set(attemptKey, attempt);
    state.lastError = { code: info.code, message: info.message, phase: row.phase, at: new Date().toISOString() };
    await this.deps.repo.record(lease, row.id, {
      type: "STEP_FAILED",
      actor: ENGINE,
      message: `${attemptKey.split(":")[1]} attempt ${attempt}: ${info.message}`,
      payload: { step: attemptKey.split(":")[1], code: info.code, attempt },
    }, state);
    log.warn("step failed", { step: attemptKey, attempt, error: info.message });
    const initial = durationMs(spec.stepPolicy?.initialBackoff) ?? 1000;
    const cap = durationMs(spec.stepPolicy?.maxBackoff) ?? 30_000;
    return Math.min(cap, initial * 2 ** (attempt - 1));
  }

  private deadlineMs(spec: MigrationSpec, phase: PhaseName): number | undefined {
    const custom = spec.stepPolicy?.phaseDeadlines[phase];
    return custom ? durationMs(custom) : DEFAULT_DEADLINES[phase];
  }

  /**
   * Retries with backoff; when attempts run out (or the error is one no retry
   * fixes), the failure policy: before promotion the source is unfenced and
   * the migration returns to a safe phase; from promotion on it rolls back,
   * unless the policy says to hold.
   */
  private async onFailure(
    row: MigrationRow, spec: MigrationSpec, lease: Lease, state: MigrationStateJson, e: unknown, attemptKey: string,
    provider: Provider, source: InstanceRef, target: InstanceRef, log: Logger,
  ): Promise<"done" | number> {
    const { repo } = this.deps;
    const info = errorInfo(e);
    const backoff = await this.retryLater(row, spec, lease, state, e, attemptKey, log);
    const attempt = this.attempts.get(attemptKey) ?? 1;
    const max = spec.stepPolicy?.maxAttempts || 5;
    // Getting traffic back to the source is never given up on.
    if (row.phase === "ROLLING_BACK" || (!info.permanent && attempt < max)) return backoff;
    this.attempts.delete(attemptKey);
    const moveTo = (to: PhaseName, reason: string, extra: { paused?: boolean } = {}) =>
      repo.transition(lease, row.id, row.phase, to, ENGINE, reason, { state: { ...state, phaseEnteredAt: new Date().toISOString() }, ...extra });
    if (FENCED_BEFORE_PROMOTION.includes(row.phase)) {
      await provider.unfence(source);
      delete state.finalLsn;
      // The transition below persists this; consumers paused for the cutover read the source again.
      await resumeOnSource({ provider, source, target, spec, state, note: async () => {} });
      // Held there: another automatic attempt would fence the source again for the same reason.
      await moveTo("REPLICATING", `${row.phase} failed (${info.message}); ${source.id} unfenced, replicating again; paused until an operator resumes`, { paused: true });
      return 0;
    }
    if (BEFORE_PROMOTION.includes(row.phase)) {
      // Nothing was fenced or promoted: remove what we created so no slot keeps WAL on the source.
      await provider.deleteReplica(source, target).catch(() => {});
      await moveTo("FAILED", `${row.phase} failed: ${info.message}`);
      return "done";
    }
    if (spec.failurePolicy === FailurePolicy.HOLD) {
      state.held = { phase: row.phase, at: new Date().toISOString() };
      await repo.record(lease, row.id, { type: "OPERATOR_ACTION", actor: ENGINE, message: `holding in ${row.phase} for an operator (failure policy HOLD): ${info.message}` }, state, { paused: true });
      return 500;
    }
    state.rollbackFrom = row.phase;
    await moveTo("ROLLING_BACK", `${row.phase} failed (${info.message}); rolling back per the failure policy`);
    return 0;
  }

  /**
   * Sends everything back to the source. Before promotion the target is just
   * removed; after it, traffic is routed back and the source unfenced, and the
   * promoted target is kept for inspection.
   */
  private rollbackStep(row: MigrationRow, state: MigrationStateJson) {
    const from = state.rollbackFrom ?? "PENDING";
    const promoted = FORWARD.indexOf(from) >= FORWARD.indexOf("PROMOTING");
    return async (env: StepEnv): Promise<Outcome> => {
      const reverse = promoted && (env.state.reverseDatabases?.length ?? 0) > 0;
      if (promoted) {
        // Two writable primaries must never both take traffic: the promoted target stops taking any.
        await env.provider.fence(env.target).catch((e: unknown) => {
          if (reverse) throw e;
        });
      }
      if (reverse) {
        // Lossless: with the target's writes stopped, let the source apply all of them and carry sequences over.
        await drainReverseReplication(env.provider, env.source, env.target, Math.max(5_000, env.remainingMs));
      }
      if (promoted) {
        const warning = await rollbackSlots(cdcContext(env), Math.max(5_000, env.remainingMs));
        if (warning) await env.report(warning);
      }
      await env.provider.unfence(env.source);
      const sourceEp = await env.provider.endpoint(env.source);
      const current = await env.router.current(env.spec.databaseName);
      if (current && (current.endpoint.host !== sourceEp.host || current.endpoint.port !== sourceEp.port)) {
        await env.router.route(env.spec.databaseName, sourceEp, 120_000, { tolerateNack: true });
      }
      await resumeOnSource(cdcContext(env));
      if (reverse) await stopReverseReplication(env.provider, env.source, env.target);
      if (!promoted) await env.provider.deleteReplica(env.source, env.target);
      void row;
      return {
        to: "ROLLED_BACK",
        reason: promoted
          ? `traffic routed back to ${env.source.id}, which is unfenced${reverse ? " and holds every write made on the target" : ""}; ${env.target.id} kept, fenced, for inspection`
          : `${env.source.id} unfenced and ${env.target.id} removed`,
      };
    };
  }
}
