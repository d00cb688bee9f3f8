import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import { check, mergeChecks } from "../domain/check.js";
import { DeadlineExceededError, FailedPreconditionError, LeaseLostError } from "../domain/errors.js";
import { isTerminal, type PhaseName } from "../domain/phases.js";
import { linkedSignal } from "../support/linked-signal.js";
import { sleep } from "../support/sleep.js";
import { resolveSpec, sourceRef, specFromJson, targetRef } from "../domain/spec.js";
import type { MigrationStateJson } from "../domain/state.js";
import { CUTOVER_WINDOW } from "../domain/transitions.js";
import { nextCutoverTiming, nextRollbackTiming, phaseOutcome, withTimedPart } from "../domain/cutover-timing.js";
import { pauseAlert } from "../cdc/coordinator.js";
import type { Provider } from "../providers/provider.js";
import type { Router } from "../routing/router.js";
import type { Lease, Leases } from "../store/leases.js";
import type { MigrationRepo, MigrationRow, NewEvent } from "../store/migration-repo.js";
import type { Logger } from "../telemetry/log.js";
import type { ServiceMetrics } from "../telemetry/metrics.js";
import { NO_TRACING, type MigrationTracing, type SpanAttributes } from "../telemetry/tracing.js";
import { realActivities } from "./activities.js";
import { backoffMs as decideBackoff, decide, failureInfo, type Decision } from "./failure-policy.js";
import { REVERSE_SAMPLE_MS, watchReverse } from "./reverse-watch.js";
import { operatorAction, removedText } from "./operator-actions.js";
import { cdcContext, type Activities, type Outcome, type StepEnv } from "./step-env.js";
import { STEPS } from "./steps.js";

export interface EngineDeps {
  repo: MigrationRepo;
  leases: Leases;
  /** The provider a migration runs on, configured by its spec (fence mode, AWS options). */
  providers: (spec: MigrationSpec) => Provider;
  router: Router;
  log: Logger;
  /** CDC, reverse replication and probes; the real ones unless a test gives fakes. */
  activities?: Activities;
  /** How often to look for migrations nobody drives. */
  tickMs?: number;
  /** The lease while writes are stopped (cutover window, rollback); default 2 s. */
  fencedLeaseMs?: number;
  /** How long each baseline sample lasts (default 2 s). */
  baselineSampleMs?: number;
  metrics?: ServiceMetrics;
  tracing?: MigrationTracing;
}

const ENGINE = "engine";

/** A lease this replica holds, with the time-to-live it is renewed with now. */
interface HeldLease {
  lease: Lease;
  ttlMs: number;
}
/** Without a deadline a phase may take this long. */
const NO_DEADLINE_MS = 24 * 3600_000;
/** In COMPLETED, once consumers read the target: how often the kept source slots' WAL is measured, and persisted at most. */
const OBSERVE_IDLE_MS = 10_000;
const PERSIST_RETAINED_MS = 60_000;

/**
 * Drives migrations. Each replica of the service runs one; a migration is
 * driven by the replica that holds its lease, one step at a time, every
 * transition written under that lease. What a failure leads to is the pure
 * failure policy's decision (failure-policy.ts); the steps are in steps.ts.
 */
export class Engine {
  private readonly driving = new Map<string, Promise<void>>();
  private readonly attempts = new Map<string, number>();
  /** When each COMPLETED migration's CDC slots were last observed, and their WAL retention last persisted. */
  private readonly observed = new Map<string, number>();
  private readonly persisted = new Map<string, number>();
  private readonly reverseSampled = new Map<string, number>();
  private readonly stopping = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private firstTick: Promise<void> | undefined;
  /** The phase each migration driven here was last read in; undefined until its driver has read it. */
  private readonly phases = new Map<string, PhaseName | undefined>();

  constructor(private readonly deps: EngineDeps) {}

  private get tracing(): MigrationTracing {
    return this.deps.tracing ?? NO_TRACING;
  }

  start(): void {
    const tick = () => {
      if (this.ticking || this.stopping.signal.aborted) return;
      this.ticking = true;
      return this.tick()
        .catch((e: unknown) => this.deps.log.warn("engine tick failed", { error: String(e) }))
        .finally(() => (this.ticking = false));
    };
    this.timer = setInterval(tick, this.deps.tickMs ?? 500);
    this.firstTick = tick();
  }

  /**
   * Resolves once no migration this replica drives is where writes are stopped (from the fence to routing,
   * or rolling back), or after `maxMs`. A replica restarted inside that window loads what can wait (the API, metrics)
   * after it: on a busy machine, their CPU would otherwise lengthen the applications' gap.
   */
  async windowClear(maxMs: number): Promise<void> {
    const until = Date.now() + maxMs;
    await this.firstTick;
    const stopped = (p: PhaseName | undefined) => p === undefined || CUTOVER_WINDOW.includes(p) || p === "ROLLING_BACK";
    while (Date.now() < until && !this.stopping.signal.aborted && [...this.phases.values()].some(stopped))
      await sleep(20, this.stopping.signal);
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
      this.phases.set(id, undefined);
      this.driving.set(
        id,
        this.drive(id, lease).finally(() => {
          this.driving.delete(id);
          this.phases.delete(id);
        }),
      );
    }
  }

  private async drive(id: string, lease: Lease): Promise<void> {
    const log = this.deps.log.child({ migration: id, token: lease.token });
    const lost = new AbortController();
    const linked = linkedSignal(lost.signal, this.stopping.signal);
    const signal = linked.signal;
    const held: HeldLease = { lease, ttlMs: this.deps.leases.ttlMs };
    let renew: NodeJS.Timeout | undefined;
    const scheduleRenew = () => {
      renew = setTimeout(
        () => {
          this.deps.leases.renew(lease, held.ttlMs).then(
            (ok) => {
              if (!ok) lost.abort();
              else if (!signal.aborted) scheduleRenew();
            },
            () => lost.abort(),
          );
        },
        Math.max(50, held.ttlMs / 4),
      );
    };
    scheduleRenew();
    log.info("driving");
    try {
      while (!signal.aborted) {
        const next = await this.advance(id, held, signal, log);
        if (next === "done") break;
        await sleep(next, signal);
      }
    } catch (e) {
      if (e instanceof LeaseLostError)
        log.warn("lease lost; another replica drives this migration now", { error: e.rawMessage });
      else log.error("driver failed", { error: String(e) });
    } finally {
      linked.dispose();
      clearTimeout(renew);
      if (!lost.signal.aborted) await this.deps.leases.release(lease).catch(() => {});
    }
  }

  /** The environment a step (or an operator's action) of this migration runs in. */
  private env(row: MigrationRow, lease: Lease, signal: AbortSignal, remainingMs: number): StepEnv {
    const { repo } = this.deps;
    const spec = specFromJson(row.spec);
    const state: MigrationStateJson = structuredClone(row.state);
    return {
      row,
      spec,
      policy: resolveSpec(spec),
      baselineSampleMs: this.deps.baselineSampleMs ?? 2_000,
      provider: this.deps.providers(spec),
      router: this.deps.router,
      activities: this.deps.activities ?? realActivities,
      source: sourceRef(spec),
      target: targetRef(spec),
      signal,
      remainingMs,
      state,
      report: async (result) => {
        state.checks = mergeChecks(state.checks ?? [], [result]);
        await repo.record(
          lease,
          row.id,
          { type: "CHECK_RESULT", actor: ENGINE, message: result.message, payload: { check: result } },
          state,
        );
      },
      interrupted: async () => {
        const now = await repo.get(row.id);
        return now.paused || now.requested_action !== null;
      },
      note: async (message) => {
        await repo.record(lease, row.id, { type: "CDC", actor: ENGINE, message }, state);
      },
      save: () => repo.saveState(lease, row.id, state),
      trace: async (name, fn, attrs = {}) => {
        // Timed into the cutover's breakdown as well as traced: GetMigration and the benchmark show it.
        const startedAt = Date.now();
        let failed = true;
        try {
          const r = await this.tracing.span(name, attrs, fn);
          failed = false;
          return r;
        } finally {
          const part = { name, phase: row.phase, startedAt, endedAt: Date.now(), failed };
          if (state.cutover && !state.cutover.endedAt) state.cutover = withTimedPart(state.cutover, part);
          else state.rollback = withTimedPart(state.rollback, part);
        }
      },
    };
  }

  /** Runs one attempt (a step, or an operator's action) in its span, under the phase's. */
  private async attempt<T>(env: StepEnv, name: string, attemptKey: string, fn: () => Promise<T>): Promise<T> {
    const { row } = env;
    const a = {
      migrationId: row.id,
      attrs: spanAttrs(env),
      phase: row.phase,
      enteredAt: row.state.phaseEnteredAt ?? row.updated_at.toISOString(),
      name,
      attempt: (this.attempts.get(attemptKey) ?? 0) + 1,
      links: await this.triggers(row),
    };
    return this.tracing.attempt(a, fn);
  }

  /**
   * The API calls that triggered what this attempt does (the creation, an approval, a rollback, an abort…), as
   * links: looked up only when such a request is what moves the migration now.
   */
  private async triggers(row: MigrationRow): Promise<{ traceId: string; spanId: string }[]> {
    const operatorMoves = row.requested_action !== null || (row.phase === "READY_FOR_CUTOVER" && row.cutover_approved);
    const t = operatorMoves
      ? await this.deps.repo.lastRequestTrace(row.id, "OPERATOR_ACTION")
      : row.phase === "PENDING"
        ? await this.deps.repo.lastRequestTrace(row.id, "CREATED")
        : undefined;
    return t ? [t] : [];
  }

  /** Moves the migration on, persisting the state as the step left it. */
  private async move(
    env: StepEnv,
    lease: Lease,
    to: PhaseName,
    reason: string,
    extra: { clearRequest?: boolean; paused?: boolean } = {},
  ) {
    const from = env.row.phase;
    const at = new Date();
    const enteredAt = env.state.phaseEnteredAt ? Date.parse(env.state.phaseEnteredAt) : env.row.updated_at.getTime();
    const cutover = nextCutoverTiming(env.state.cutover, from, to, at);
    const rollback = nextRollbackTiming(env.state.rollback, from, to, at);
    const state: MigrationStateJson = {
      ...env.state,
      phaseEnteredAt: at.toISOString(),
      ...(cutover ? { cutover } : {}),
      ...(rollback ? { rollback } : {}),
    };
    // Inside the window, where writes are stopped, the next step's intent goes in the move's own commit: a commit
    // to the store less per phase. The step runs right after (nothing in the window pauses), as recordIntent would say.
    const intent = CUTOVER_WINDOW.includes(to) && !extra.paused ? intentOf(state, to, lease) : undefined;
    const row = await this.deps.repo.transition(lease, env.row.id, from, to, ENGINE, reason, {
      state: intent?.state ?? state,
      ...extra,
      ...(intent ? { then: intent.event } : {}),
    });
    // Measured by the replica that made the move, once it is committed.
    const m = this.deps.metrics;
    m?.phaseEnded(from, phaseOutcome(from, to), (at.getTime() - enteredAt) / 1000);
    if (cutover?.endedAt && cutover !== env.state.cutover)
      m?.cutoverEnded(cutover.outcome ?? "", (cutover.windowMs ?? 0) / 1000);
    const st = env.state;
    this.tracing.phaseEnded({
      migrationId: row.id,
      attrs: {
        ...spanAttrs(env),
        ...(st.finalLsn ? { "pgshift.final_lsn": st.finalLsn } : {}),
        ...(st.replication?.lagBytes != null ? { "pgshift.replication.lag_bytes": st.replication.lagBytes } : {}),
        ...(st.replication?.lagSeconds != null ? { "pgshift.replication.lag_seconds": st.replication.lagSeconds } : {}),
      },
      from,
      to,
      reason,
      enteredAt: env.state.phaseEnteredAt ?? env.row.updated_at.toISOString(),
      at,
      createdAt: row.created_at,
      cutover,
      outcome: phaseOutcome(from, to),
      terminal: isTerminal(to),
    });
    return row;
  }

  /** One decision: act on an operator's request, or run the phase's step. Returns "done" or ms to wait. */
  private async advance(id: string, held: HeldLease, signal: AbortSignal, log: Logger): Promise<"done" | number> {
    const { lease } = held;
    const row = await this.deps.repo.get(id);
    this.phases.set(id, row.phase);
    await this.fitLease(held, row.phase);
    if (isTerminal(row.phase)) {
      return "done";
    }
    const probe = resolveSpec(specFromJson(row.spec));
    const deadline = probe.deadlineMs(row.phase);
    const entered = row.state.phaseEnteredAt ? Date.parse(row.state.phaseEnteredAt) : row.updated_at.getTime();
    const remainingMs = deadline === undefined ? NO_DEADLINE_MS : entered + deadline - Date.now();
    const env = this.env(row, lease, signal, remainingMs);

    // Operator requests come first: they are why a long step yields.
    const action = operatorAction(env);
    if (action) {
      const attemptKey = `${id}:${row.requested_action}`;
      try {
        const outcome = await this.attempt(env, `action ${row.requested_action}`, attemptKey, action);
        this.attempts.delete(attemptKey);
        await this.fitLease(held, outcome.to);
        await this.move(env, lease, outcome.to, outcome.reason, { clearRequest: outcome.to !== "ROLLING_BACK" });
        return isTerminal(outcome.to) ? "done" : 0;
      } catch (e) {
        if (e instanceof LeaseLostError || signal.aborted)
          throw e instanceof LeaseLostError ? e : new LeaseLostError("stopped");
        // An operator's request is retried until it is done; the failure policy is for steps.
        const decision = await this.recordFailure(env, lease, e, attemptKey, log, { operator: true });
        return decision.kind === "retry" ? decision.backoffMs : 500;
      }
    }
    // An operator's pause that raced into the cutover window is not honoured there (writes are stopped); a hold of the failure policy is.
    const heldHere = env.state.held?.phase === row.phase;
    const holding = !CUTOVER_WINDOW.includes(row.phase) || heldHere;
    // A rollback is not paused by an operator's pause, only held by a failure that needs one.
    if (row.paused && (row.phase !== "ROLLING_BACK" || heldHere) && holding) return 500;
    delete env.state.held;
    if (row.phase === "COMPLETED") return this.watchCompleted(env, log);
    if (env.state.failing) return this.finishFailing(env, lease, log);

    const step = STEPS[row.phase];
    if (!step) throw new FailedPreconditionError(`no step for phase ${row.phase}`);
    await this.alertOnPause(env, log);
    await this.recordIntent(env, lease);
    const attemptKey = `${id}:${row.phase}`;
    let outcome: Outcome;
    try {
      if (remainingMs <= 0)
        throw new DeadlineExceededError(`phase ${row.phase} ran past its deadline of ${deadline} ms`);
      outcome = await this.attempt(env, `step ${row.phase}`, attemptKey, () => step(env));
    } catch (e) {
      if (e instanceof LeaseLostError || signal.aborted)
        throw e instanceof LeaseLostError ? e : new LeaseLostError("stopped");
      return this.onFailure(env, lease, e, attemptKey, log);
    }
    if ("waitMs" in outcome) return outcome.waitMs;
    this.attempts.delete(attemptKey);
    if (signal.aborted) return "done";
    // Entering the window where writes stop: the lease is short before the phase begins, not from its next renewal.
    await this.fitLease(held, outcome.to);
    await this.move(env, lease, outcome.to, outcome.reason, outcome.to === "ROLLED_BACK" ? { clearRequest: true } : {});
    log.info("phase", { from: row.phase, to: outcome.to, reason: outcome.reason });
    return 0;
  }

  /**
   * While writes are stopped (from the fence to routing, and while rolling
   * back), the lease is short and renewed often, so that another replica takes
   * over within seconds should this one die there; elsewhere, the configured
   * lease. Shortened before the step runs, not at the next renewal.
   */
  private async fitLease(held: HeldLease, phase: PhaseName): Promise<void> {
    const fenced = CUTOVER_WINDOW.includes(phase) || phase === "ROLLING_BACK";
    const ttlMs = fenced ? Math.min(this.deps.fencedLeaseMs ?? 2_000, this.deps.leases.ttlMs) : this.deps.leases.ttlMs;
    if (ttlMs === held.ttlMs) return;
    held.ttlMs = ttlMs;
    if (!(await this.deps.leases.renew(held.lease, ttlMs))) throw new LeaseLostError("the lease was taken over");
  }

  /**
   * The intent, once per phase and driver: that the step starts, or that a
   * new driver (after a crash or a takeover) resumes one another began, whose
   * side effects it checks rather than repeats.
   */
  private async recordIntent(env: StepEnv, lease: Lease): Promise<void> {
    const intent = intentOf(env.state, env.row.phase, lease);
    if (!intent) return;
    env.state.steps = intent.state.steps;
    await this.deps.repo.record(lease, env.row.id, intent.event, env.state);
  }

  /** Logs a failed attempt (event and last_error) and returns what the failure policy makes of it. */
  private async recordFailure(
    env: StepEnv,
    lease: Lease,
    e: unknown,
    attemptKey: string,
    log: Logger,
    opts: { operator?: boolean } = {},
  ): Promise<Decision> {
    const info = failureInfo(e);
    const attempt = (this.attempts.get(attemptKey) ?? 0) + 1;
    this.attempts.set(attemptKey, attempt);
    const step = attemptKey.split(":")[1];
    env.state.lastError = {
      code: info.code,
      message: info.message,
      phase: env.row.phase,
      at: new Date().toISOString(),
    };
    await this.deps.repo.record(
      lease,
      env.row.id,
      {
        type: "STEP_FAILED",
        actor: ENGINE,
        message: `${step} attempt ${attempt}: ${info.message}`,
        payload: { step, code: info.code, attempt },
      },
      env.state,
    );
    log.warn("step failed", { step: attemptKey, attempt, error: info.message });
    const policy = { ...env.policy, failurePolicy: env.spec.failurePolicy };
    if (opts.operator) return { kind: "retry", backoffMs: decideBackoff(policy, attempt) };
    const decision = decide(env.row.phase, info, attempt, policy);
    if (decision.kind !== "retry") this.attempts.delete(attemptKey);
    return decision;
  }

  /**
   * The failure policy failed the migration: remove what it created, then
   * FAILED. A cleanup that fails is recorded (event, check, last_error) and
   * retried with backoff; the migration stays in its phase meanwhile.
   */
  private async finishFailing(env: StepEnv, lease: Lease, log: Logger): Promise<"done" | number> {
    const { row, state, provider, source, target } = env;
    const reason = state.failing!.reason;
    const key = `${row.id}:cleanup`;
    let removed: "deleted" | "absent" | "not-ours";
    try {
      removed = await provider.deleteReplica(source, target, row.id);
    } catch (e) {
      const info = failureInfo(e);
      await env.report(
        check("cleanup.target", "FAIL", {
          measured: info.message,
          threshold: `${target.id} and its slot on ${source.id} removed`,
          message: `the migration failed (${reason}) and removing what it created failed too; retrying`,
          remedy: `nothing, if it is transient; otherwise fix what the error names (${target.id} may keep a slot on ${source.id} retaining WAL meanwhile)`,
        }),
      );
      const decision = await this.recordFailure(env, lease, e, key, log, { operator: true });
      return decision.kind === "retry" ? decision.backoffMs : 1000;
    }
    this.attempts.delete(key);
    if (state.checks?.some((c) => c.name === "cleanup.target")) {
      await env.report(
        check("cleanup.target", "PASS", {
          measured: removed,
          threshold: `${target.id} and its slot on ${source.id} removed`,
        }),
      );
    }
    delete state.failing;
    await this.move(env, lease, "FAILED", `${reason}; ${removedText(target.id, removed)}`);
    return "done";
  }

  /**
   * COMPLETED waits for an operator; meanwhile CDC readers are watched for on
   * the target (closing their pause), the WAL the source's kept slots retain
   * is measured, and a pause that lasts is alerted on.
   */
  private async watchCompleted(env: StepEnv, log: Logger): Promise<number> {
    const { id } = env.row;
    if (Date.now() - (this.reverseSampled.get(id) ?? 0) >= REVERSE_SAMPLE_MS) {
      this.reverseSampled.set(id, Date.now());
      try {
        await watchReverse(env);
      } catch (e) {
        // Observation only, as below; the next sample tries again.
        log.warn("could not sample reverse replication", { error: String(e) });
      }
    }
    const awaiting = env.state.cdc?.awaitingReaders === true;
    const last = this.observed.get(id) ?? 0;
    if (!awaiting && Date.now() - last < OBSERVE_IDLE_MS) return 500;
    this.observed.set(id, Date.now());
    try {
      const changed = await env.activities.cdc.observeReaders(cdcContext(env));
      const slots = env.state.cdcSlots ?? [];
      if (await this.alertOnPause(env, log)) return 500;
      if (changed && (awaiting || Date.now() - (this.persisted.get(id) ?? 0) > PERSIST_RETAINED_MS)) {
        this.persisted.set(id, Date.now());
        const back = awaiting && !env.state.cdc?.awaitingReaders;
        await env.note(
          back
            ? `CDC readers back on ${env.target.id}: ${slots.map((r) => `${r.slotName} at ${r.streamResumedAt}`).join(", ")}`
            : `CDC slots kept on ${env.source.id} for a rollback retain ${slots.map((r) => `${r.slotName} ${r.retainedWalBytes ?? 0} bytes`).join(", ")}`,
        );
      }
    } catch (e) {
      // Observation only: the migration stays COMPLETED whatever the instances answer now.
      log.warn("could not observe CDC readers", { error: String(e) });
    }
    return 500;
  }

  /** The paused-consumers gauge, and the alert once a pause outlasts its threshold (persisted with the state); true if it fired. */
  private async alertOnPause(env: StepEnv, log: Logger): Promise<boolean> {
    const { id } = env.row;
    if ((env.state.cdcSlots ?? []).length > 0) this.deps.metrics?.cdcTracked(id, env.spec.databaseName);
    const alert = pauseAlert(env.spec, env.state);
    if (!alert) return false;
    log.warn("CDC consumers paused too long", { measured: alert.measured });
    this.deps.metrics?.cdcPauseAlert(id, env.spec.databaseName);
    await env.report(alert);
    return true;
  }

  /** Carries out the failure policy's decision for a failed step. */
  private async onFailure(
    env: StepEnv,
    lease: Lease,
    e: unknown,
    attemptKey: string,
    log: Logger,
  ): Promise<"done" | number> {
    const decision = await this.recordFailure(env, lease, e, attemptKey, log);
    const { row, state, provider, source } = env;
    const message = state.lastError!.message;
    switch (decision.kind) {
      case "retry":
        return decision.backoffMs;
      case "fall_back":
        try {
          // Before the source takes connections again: consumers handed over at the fence do not see again what they were sent.
          await env.activities.cdc.settleOnSource(cdcContext(env));
        } catch (err) {
          await env.report(
            check("cdc.fallback_position", "WARN", {
              measured: String(err instanceof Error ? err.message : err),
              threshold: "each slot handed over moved to what its consumer had been sent",
              message: "a CDC slot could not be moved back to where its stream was handed over",
              remedy: "its consumer may see again, once, changes it had already been sent: nothing is missing",
            }),
          );
        }
        await provider.unfence(source);
        // The next cutover reads a final LSN and hands CDC over anew.
        delete state.finalLsn;
        delete state.cdcHandOver;
        // The transition below persists this; consumers paused for the cutover read the source again.
        await env.activities.cdc.resumeOnSource({ ...cdcContext(env), note: async () => {} });
        await this.move(
          env,
          lease,
          "REPLICATING",
          `${row.phase} failed (${message}); ${source.id} unfenced, replicating again; paused until an operator resumes`,
          { paused: true },
        );
        return 0;
      case "fail":
        // Nothing was fenced or promoted: what we created goes, so no slot keeps WAL on the source; FAILED once it is gone.
        state.failing = { reason: `${row.phase} failed: ${message}`, since: new Date().toISOString() };
        return this.finishFailing(env, lease, log);
      case "hold":
        state.held = { phase: row.phase, at: new Date().toISOString() };
        await this.deps.repo.record(
          lease,
          row.id,
          {
            type: "OPERATOR_ACTION",
            actor: ENGINE,
            message: `holding in ${row.phase} for an operator (${failureInfo(e).hold ? "only an operator can resolve this" : "failure policy HOLD"}): ${message}`,
          },
          state,
          { paused: true },
        );
        return 500;
      case "roll_back":
        state.rollbackFrom = row.phase;
        await this.move(
          env,
          lease,
          "ROLLING_BACK",
          `${row.phase} failed (${message}); rolling back per the failure policy`,
        );
        return 0;
    }
  }
}

/** What every span of a migration carries. */
function spanAttrs(env: StepEnv): SpanAttributes {
  return {
    "pgshift.migration_id": env.row.id,
    "pgshift.database": env.spec.databaseName,
    "pgshift.provider": String(env.spec.provider),
    "pgshift.source": env.source.id,
    "pgshift.target": env.target.id,
  };
}

/**
 * The intent to run a phase's step under a lease, unless this lease recorded it already: the state that says so
 * and the event, "started" or, for a new driver, "resumed".
 */
function intentOf(
  state: MigrationStateJson,
  phase: PhaseName,
  lease: Lease,
): { state: MigrationStateJson; event: Omit<NewEvent, "migrationId"> } | undefined {
  const key = `intent:${phase}`;
  const prev = state.steps?.[key] as { at: string; token: string } | undefined;
  const token = String(lease.token);
  if (prev?.token === token) return undefined;
  const message = prev
    ? `${phase} resumed by a new driver (first started ${prev.at}); what it already did is checked, not repeated`
    : `${phase} started`;
  return {
    state: { ...state, steps: { ...state.steps, [key]: { at: new Date().toISOString(), token } } },
    event: { type: "STEP_STARTED", actor: ENGINE, message, payload: { step: phase, resumed: !!prev } },
  };
}
