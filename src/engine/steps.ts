import { check, failed, formatBytes, mergeChecks, newVerdicts, type CheckResult } from "../domain/check.js";
import { FailedPreconditionError, HoldForOperatorError } from "../domain/errors.js";
import { storageCheck } from "../checks/storage.js";
import { lsnDiff } from "../domain/lsn.js";
import type { PhaseName } from "../domain/phases.js";
import { sleep } from "../support/sleep.js";
import { CutoverMode } from "../gen/migration/v1/migration_pb.js";
import { baselineCheck, compareBaselines } from "../checks/baseline.js";
import { parameterCheck, runPreflight, slotChecks } from "../checks/preflight.js";
import { guardrailCheck } from "../checks/guardrails.js";
import { schemaChecks } from "../checks/schema-checks.js";
import { startReverse } from "./reverse-watch.js";
import { cdcContext, type Step, type StepEnv } from "./step-env.js";
import { rollingBack } from "./rollback.js";
import { verifyData, verifyKey } from "./data-verification.js";

/**
 * Right after cutover, connection pools reconnect and the target's cache is
 * cold: one bad sample is not a regression. A breach counts only when it holds
 * for this many consecutive samples.
 */
const BASELINE_BREACH_SAMPLES = 3;

const preflight: Step = async (env) => {
  const results = await runPreflight(
    env.provider,
    env.source,
    env.target,
    env.spec.databaseName,
    env.policy.schema,
    env.activities.schema.inventory,
  );
  env.state.checks = mergeChecks(env.state.checks ?? [], results);
  // An inactive slot does not stop the replica being built; it blocks cutover, at the lag gate, until an operator acts.
  const bad = failed(results).filter((r) => r.name !== "slots.inactive_logical");
  if (bad.length > 0) {
    throw new FailedPreconditionError(
      `preflight failed: ${bad.map((b) => `${b.name}: ${b.message} (${b.measured}); ${b.remedy}`).join(" | ")}`,
    );
  }
  // Traffic for the database goes to the source until cutover says otherwise.
  if (!(await env.router.current(env.spec.databaseName))) {
    await env.router.route(env.spec.databaseName, await env.provider.endpoint(env.source), env.remainingMs);
  }
  return { to: "PROVISIONING", reason: `preflight passed (${results.length} checks)` };
};

/** How often the source's storage is looked at while the replica is built and replays (CloudWatch has a figure a minute). */
const STORAGE_SAMPLE_MS = 30_000;

/** One look at the source's storage: said when its verdict changes; returned, so that a FAIL holds the migration. */
async function lookAtStorage(env: StepEnv): Promise<CheckResult | undefined> {
  const figures = await env.provider.storage(env.source).catch(() => undefined);
  if (!figures) return undefined;
  const verdict = storageCheck(env.source.id, figures, env.policy.storageWarnFraction, env.policy.storageHoldFraction);
  if (env.state.checks?.find((c) => c.name === "storage.source")?.status !== verdict.status) await env.report(verdict);
  return verdict;
}

function storageHold(verdict: CheckResult): HoldForOperatorError {
  return new HoldForOperatorError(`holding: ${verdict.measured}, below spec.storage_guard's hold; ${verdict.remedy}`);
}

const provisioning: Step = async (env) => {
  // Looked at before the replica is made, and all the while it is (AWS builds one for hours, and the source keeps
  // its WAL meanwhile): a source about to run out holds the migration, said with the remedy, before it does.
  const before = await lookAtStorage(env);
  if (before?.status === "FAIL") throw storageHold(before);
  const stop = new AbortController();
  let held: CheckResult | undefined;
  const watching = (async () => {
    while (!stop.signal.aborted) {
      await sleep(STORAGE_SAMPLE_MS, stop.signal);
      if (stop.signal.aborted) return;
      const v = await lookAtStorage(env);
      if (v?.status === "FAIL") held ??= v;
    }
  })();
  try {
    await env.provider.createReplica(env.source, env.target, env.row.id);
  } finally {
    stop.abort();
    await watching;
  }
  // The replica is made (its creation cannot be called back half way): the hold takes effect before it replays on.
  if (held) throw storageHold(held);
  return {
    to: "REPLICATING",
    reason: `${env.target.id} created from a snapshot of ${env.source.id} and replaying its WAL`,
  };
};

/**
 * The lag gate: lag must stay under both thresholds for the whole window, on
 * consecutive samples under the live load. Any sample over a threshold
 * restarts the window.
 */
const replicating: Step = async (env) => {
  const maxBytes = env.policy.maxLagBytes;
  const maxSecs = env.policy.maxLagMs / 1000;
  const windowMs = env.policy.windowMs;
  // Lag between two samples is unseen: sampled four times a second, a spike has little room to hide in a window counted as clean.
  const sampleMs = Math.max(100, Math.min(250, windowMs / 20));
  let windowStart: number | undefined;
  let lastSourceLsn: string | undefined;
  let lastAt = 0;
  let peak = env.state.peakWalRate ?? 0;
  let lastReport = -Infinity;
  let lastSaved = -Infinity;
  let samples = 0;
  let slotsOk = false;
  let lastSlotCheck = -Infinity;
  let lastSlotStatus = "";
  if (!env.state.checks?.some((c) => c.name === "settings.parity")) {
    const [src, tgt] = await Promise.all([env.provider.describe(env.source), env.provider.describe(env.target)]);
    await env.report(parameterCheck(src.settings, tgt.settings));
  }
  let lastStorageCheck = -Infinity;
  while (!env.signal.aborted) {
    if (await env.interrupted()) return { waitMs: 0 };
    // The source's storage, while its WAL is kept for the replica: a FAIL holds the migration before it runs out.
    if (performance.now() - lastStorageCheck > STORAGE_SAMPLE_MS) {
      lastStorageCheck = performance.now();
      const storage = await lookAtStorage(env);
      if (storage?.status === "FAIL") throw storageHold(storage);
    }
    // Slot health is part of the gate: an inactive logical slot blocks cutover until an operator drops it.
    if (performance.now() - lastSlotCheck > 2000) {
      lastSlotCheck = performance.now();
      const [slot] = slotChecks(await env.provider.describe(env.source));
      slotsOk = slot!.status === "PASS";
      if (slot!.status + slot!.measured !== lastSlotStatus) {
        lastSlotStatus = slot!.status + slot!.measured;
        await env.report(slot!);
      }
    }
    const st = await env.provider.replicationStatus(env.source, env.target);
    const now = performance.now();
    if (!st.targetRunning) {
      throw new FailedPreconditionError(`the replica ${env.target.id} is not running; it cannot converge`);
    }
    if (lastSourceLsn !== undefined) {
      const rate = Number(lsnDiff(st.sourceLsn, lastSourceLsn)) / ((now - lastAt) / 1000);
      if (rate > peak) peak = rate;
    }
    const walRate =
      lastSourceLsn !== undefined
        ? Math.max(0, Number(lsnDiff(st.sourceLsn, lastSourceLsn)) / ((now - lastAt) / 1000))
        : 0;
    lastSourceLsn = st.sourceLsn;
    lastAt = now;
    const replicationSample = () => ({
      state: st.state ?? "",
      lagBytes: st.lagBytes === null ? null : Number(st.lagBytes),
      lagSeconds: st.lagSeconds,
      walBytesPerSec: walRate,
      sampledAt: new Date().toISOString(),
      windowHeldMs: windowStart === undefined ? undefined : now - windowStart,
    });
    const okBytes = st.lagBytes !== null && st.lagBytes <= maxBytes;
    const okSecs = st.lagSeconds !== null && st.lagSeconds <= maxSecs;
    const ok = st.state === "streaming" && okBytes && okSecs && slotsOk;
    // The samples of the window under way: a restarted window counts from zero.
    samples = ok ? samples + 1 : 0;
    const measured = `${slotsOk ? "" : "blocked by an inactive logical slot; "}state ${st.state}, lag ${st.lagBytes === null ? "unknown" : formatBytes(st.lagBytes)} / ${st.lagSeconds === null ? "unknown" : `${st.lagSeconds.toFixed(2)}s`}${st.platform ? `; ${st.platform}` : ""}`;
    const threshold = `≤ ${formatBytes(maxBytes)} and ≤ ${maxSecs}s for ${windowMs / 1000}s`;
    if (!ok) {
      if (windowStart !== undefined || now - lastReport > 5000) {
        lastReport = now;
        env.state.peakWalRate = peak;
        await env.report(
          check("replication.lag_window", "WARN", {
            measured,
            threshold,
            message:
              windowStart !== undefined
                ? "lag went over a threshold: the window starts again"
                : "waiting for the replica to stream within the thresholds",
            remedy: "nothing to do if it settles; otherwise reduce the write load or raise the thresholds",
          }),
        );
      }
      windowStart = undefined;
    } else {
      windowStart ??= now;
      if (now - windowStart >= windowMs) {
        env.state.peakWalRate = peak;
        env.state.replication = replicationSample();
        // Settings may have changed on either side while we waited: compare them as they are at the gate.
        const [src, tgt] = await Promise.all([env.provider.describe(env.source), env.provider.describe(env.target)]);
        env.state.checks = mergeChecks(env.state.checks ?? [], [
          parameterCheck(src.settings, tgt.settings),
          check("replication.lag_window", "PASS", {
            measured: `${measured}; held for ${((now - windowStart) / 1000).toFixed(1)}s over ${samples} samples; peak WAL rate ${formatBytes(peak)}/s`,
            threshold,
            message: "lag stayed under the thresholds for the whole window",
          }),
        ]);
        return {
          to: "READY_FOR_CUTOVER",
          reason: `lag held under the thresholds for ${windowMs / 1000}s; peak WAL rate kept up with: ${formatBytes(peak)}/s`,
        };
      }
    }
    // What GetMigration and the metrics show of the replica: persisted at most once a second, never more often than sampled.
    if (now - lastSaved >= 1000) {
      lastSaved = now;
      env.state.replication = replicationSample();
      await env.save();
    }
    await sleep(sampleMs, env.signal);
  }
  return { waitMs: 0 };
};

/** How often a reverse-replication path that failed is tried again, while the migration waits before cutover. */
const REVERSE_PROBE_MS = 10_000;

/** How often the schema is looked at again while a FAIL in it holds the cutover. */
const SCHEMA_RECHECK_MS = 5_000;

/** Verdicts recorded: each one that is news as an event, the rest folded into the state quietly. */
async function recordVerdicts(env: StepEnv, verdicts: CheckResult[]): Promise<void> {
  for (const v of newVerdicts(env.state.checks ?? [], verdicts)) await env.report(v);
  env.state.checks = mergeChecks(env.state.checks ?? [], verdicts);
}

const readyForCutover: Step = async (env) => {
  const go = env.spec.cutoverMode === CutoverMode.AUTOMATIC || env.row.cutover_approved;
  if (!env.state.baseline) {
    env.state.baseline = await env.activities.probes.baseline(env.provider, env.source, env.baselineSampleMs);
    // Persisted now (with the state), not at the transition: this step may wait long for approval.
    await env.report(baselineCheck(env.state.baseline));
    // The change streams cutover will coordinate, on record for operators before they approve it.
    await env.activities.cdc.inventory(cdcContext(env));
  }
  // The schema, looked at again when the migration gets here and when its cutover starts (it may have changed since
  // preflight): a FAIL holds the cutover; reverse replication's publications list the tables as they are then,
  // outside the write-unavailability window.
  if (!env.state.reverseDatabases || go) {
    const inventory = await env.activities.schema.inventory(env.provider, env.source);
    const verdicts = schemaChecks(inventory, env.policy.schema);
    await recordVerdicts(env, verdicts);
    if (failed(verdicts).length > 0) return { waitMs: SCHEMA_RECHECK_MS };
    const pubs = await env.activities.reverse.prepare(
      env.provider,
      env.source,
      inventory,
      env.policy.schema.identityFull,
    );
    env.state.reverseDatabases = pubs.map((p) => p.database);
    env.state.insertOnlyTables = pubs.flatMap((p) => p.inserts.map((t) => `${p.database}.${t}`));
  }
  // And its path: what PROMOTING needs from the source, proven while the source is still the primary.
  if (!env.state.reversePathAt) {
    const error = await env.activities.reverse.probe(env.provider, env.source, env.target, env.state.reverseDatabases);
    const dbs = env.state.reverseDatabases.join(", ") || "no database";
    if (error) {
      await env.report(
        check("rollback.reverse_path", "FAIL", {
          measured: `${env.source.id} cannot reach ${env.target.id}: ${error}`,
          threshold: `${env.source.id} connects to ${env.target.id} as reverse replication will (${dbs})`,
          message:
            "after promotion the source subscribes to the target, so that a rollback loses none of the target's writes; that connection fails now",
          remedy: `let ${env.source.id} reach ${env.target.id}'s endpoint (network path, security groups, pg_hba) with the credentials the target accepts; the cutover waits until it can, re-checked every ${REVERSE_PROBE_MS / 1000} s`,
        }),
      );
      return { waitMs: REVERSE_PROBE_MS };
    }
    env.state.reversePathAt = new Date().toISOString();
    await env.report(
      check("rollback.reverse_path", "PASS", {
        measured: `${env.source.id} reached ${env.target.id} (${dbs})`,
        threshold: "the source reaches the target",
      }),
    );
  }
  if (go)
    return {
      to: "QUIESCING",
      reason: env.spec.cutoverMode === CutoverMode.AUTOMATIC ? "automatic cutover" : "cutover approved",
    };
  return { waitMs: 500 };
};

const cdcPrepare: Step = async (env) => {
  const reason = await env.activities.cdc.drainAndPause(cdcContext(env), env.state.finalLsn!, env.remainingMs);
  return { to: "PROMOTING", reason };
};

/** How often the guardrails look again while they hold the cutover. */
const GUARDRAIL_POLL_MS = 250;

/**
 * Before the fence: work a fence would cut short or carry over half done (long or idle transactions, DDL,
 * prepared transactions) is waited for, up to spec.guardrails.max_wait, said while it waits; then the cutover is
 * refused with the sessions named, before anything was fenced (the failure falls back to REPLICATING, paused).
 */
async function awaitGuardrails(env: StepEnv): Promise<void> {
  const { guardrailMaxTransactionAgeMs: maxAge, guardrailMaxWaitMs: maxWait } = env.policy;
  const started = performance.now();
  let said = "";
  while (true) {
    const blockers = await env.activities.schema.guardrails(env.provider, env.source, maxAge);
    const waited = performance.now() - started;
    const refused = blockers.length > 0 && waited >= maxWait;
    const verdict = guardrailCheck(blockers, maxAge, maxWait, waited, refused);
    if (blockers.length === 0) {
      // Said only after a wait: a clear look is the common case, and the window's start is not the place for a write.
      if (said) await env.report(verdict);
      return;
    }
    if (refused) {
      await env.report(verdict);
      throw new FailedPreconditionError(`cutover refused before the fence: ${verdict.measured}`);
    }
    const who = blockers.map((b) => `${b.kind}:${b.pid ?? b.what}`).join(",");
    if (who !== said) {
      said = who;
      await env.report(verdict);
    }
    await sleep(GUARDRAIL_POLL_MS, env.signal);
  }
}

const quiescing: Step = async (env) => {
  // A fence already in place (a restarted step) has ended every session: nothing left to wait for. Meanwhile the
  // sessions the comparison after cutover takes its snapshots on are opened, so that taking them in PROMOTING costs
  // one round trip (a failure costs the comparison only, said in VERIFYING).
  if (!(await env.provider.isFenced(env.source))) {
    const dbs = env.state.reverseDatabases ?? [];
    await Promise.all([
      awaitGuardrails(env),
      env.activities.verify.open(env.provider, env.source, env.target, dbs, verifyKey(env, "cutover")).catch(() => {}),
    ]);
  }
  await env.trace("fence", () => env.provider.fence(env.source));
  return { to: "FINAL_SYNC", reason: `${env.source.id} fenced: new client connections refused, sessions ended` };
};

/**
 * A client session the fence did not end (one that logged in past it): its writes may follow the final LSN and be
 * lost at promotion, so the cutover is held, the sessions named (the failure falls back to REPLICATING, paused).
 */
async function refuseIntruders(env: StepEnv, intruders: string[], when: string): Promise<void> {
  if (intruders.length === 0) return;
  const measured = `${intruders.length} client session(s) pgshift did not open on the fenced ${env.source.id} ${when}: ${intruders.slice(0, 5).join("; ")}`;
  await env.report(
    check("fence.sessions", "FAIL", {
      measured,
      threshold: "no client session but pgshift's own while the source is fenced",
      message: "a session got past the fence; its writes could follow the final LSN and be lost at promotion",
      remedy:
        "find what logs in as that role during the cutover (the provider's preflight names the roles its fence cannot refuse) and stop it, then approve again",
    }),
  );
  throw new FailedPreconditionError(`cutover held: ${measured}`);
}

const finalSync: Step = async (env) => {
  // Fenced, the source writes nothing more; its position now is the last the target needs. Read in the same
  // statement: whether any session but pgshift's own is there to write after it.
  if (!env.state.finalLsn) {
    const { lsn, intruders } = await env.trace("final_lsn", () => env.provider.fencedPosition(env.source));
    await refuseIntruders(env, intruders, "when the final LSN was read");
    env.state.finalLsn = lsn;
  }
  const finalLsn = env.state.finalLsn;
  // The CDC hand-over needs only the final LSN: it runs while the replica replays up to it, not after (writes are stopped).
  // And the last look before promotion, beside them (it costs the window nothing there): no session got past the
  // fence since the final LSN was read.
  const [replayed, handed, recheck] = await Promise.allSettled([
    env.trace("replay", () => env.provider.waitForReplay(env.target, finalLsn, Math.max(1, env.remainingMs)), {
      "pgshift.final_lsn": finalLsn,
    }),
    env.trace("cdc_drain", () => env.activities.cdc.drainAndPause(cdcContext(env), finalLsn, env.remainingMs)),
    env.trace("fence_recheck", () => env.provider.intruders(env.source)),
  ]);
  if (recheck.status === "rejected") throw recheck.reason;
  await refuseIntruders(env, recheck.value, "before promotion");
  if (replayed.status === "rejected") throw replayed.reason;
  if (handed.status === "rejected") throw handed.reason;
  return { to: "CDC_PREPARE", reason: `${env.target.id} replayed up to the final LSN ${finalLsn}; ${handed.value}` };
};

const promoting: Step = async (env) => {
  await env.trace("promote", () => env.provider.promote(env.source, env.target));
  // Before any traffic reaches the target, so that every write on it can flow back on rollback.
  env.state.reverseDatabases ??= [];
  // The CDC slots go on the target alongside reverse replication's start, not after it: both must precede traffic, neither waits for the other.
  // So is the snapshot of both sides that verification compares after routing: the target as promoted, the source
  // as fenced, before any write reaches either. A failure to take it costs the comparison only, said in VERIFYING.
  const [started, restored] = await Promise.allSettled([
    env.trace("reverse_slots", () =>
      env.activities.reverse.reserve(env.provider, env.target, env.state.reverseDatabases!),
    ),
    env.trace("cdc_restore", () => env.activities.cdc.restoreOnTarget(cdcContext(env))),
    env.trace("snapshot_hold", () =>
      env.activities.verify
        .hold(env.provider, env.source, env.target, env.state.reverseDatabases!, verifyKey(env, "cutover"))
        .catch(() => {}),
    ),
  ]);
  if (started.status === "rejected") throw started.reason;
  if (restored.status === "rejected") throw restored.reason;
  return {
    to: "CDC_RESTORE",
    reason: `${env.target.id} promoted and accepting writes; its changes kept for reverse replication to ${env.source.id} for ${env.state.reverseDatabases.join(", ") || "no database"}; ${restored.value}`,
  };
};

const cdcRestore: Step = async (env) => {
  return {
    to: "ROUTING",
    reason: await env.trace("cdc_restore", () => env.activities.cdc.restoreOnTarget(cdcContext(env))),
  };
};

const routing: Step = async (env) => {
  const ep = await env.provider.endpoint(env.target);
  const route = await env.router.route(env.spec.databaseName, ep, Math.max(1, env.remainingMs), { trace: env.trace });
  return {
    to: "VERIFYING",
    reason: `${env.spec.databaseName} routed to ${ep.host}:${ep.port} (version ${route.version})`,
  };
};

const verifying: Step = async (env) => {
  // Off the cutover path: the source subscribes to what the target kept since promotion, and releases its slot for
  // the replica (which would retain WAL from now on).
  await startReverse(env);
  await env.provider.detachReplica(env.source, env.target);
  // The source's logical slots stay until finalize: a rollback streams from them what consumers had not read on the target.
  await env.activities.cdc.observeReaders(cdcContext(env));
  // Sidecars that did not take the new route (gone, or never reconnected): their applications still reach the old endpoint.
  const behind = (await env.router.proxies(env.spec.databaseName)).filter((p) => p.behind);
  await env.report(
    behind.length === 0
      ? check("routing.proxies_current", "PASS", {
          measured: "every known sidecar applied the current route",
          threshold: "every sidecar on the current route",
        })
      : check("routing.proxies_current", "WARN", {
          measured: behind
            .map((p) => `${p.nodeId} at version ${p.ackedVersion ?? "none"}${p.connected ? "" : " (disconnected)"}`)
            .join(", "),
          threshold: "every sidecar on the current route",
          message: `${behind.length} sidecar(s) have not applied the route to ${env.target.id}; their applications still reach the old endpoint, which is fenced`,
          remedy:
            "check their xDS connection: a sidecar that reconnects to any replica gets the current route at once (give each several control-plane addresses)",
        }),
  );
  const writable = await env.activities.probes.targetWritable(env.provider, env.target);
  env.state.checks = mergeChecks(env.state.checks ?? [], [writable]);
  if (writable.status === "FAIL")
    throw new FailedPreconditionError(`the target is not a writable primary after promotion: ${writable.measured}`);
  await verifyData(env, "cutover");
  await captureDdl(env);
  if (env.state.baseline) {
    const sample = () => env.activities.probes.baseline(env.provider, env.target, env.baselineSampleMs);
    let cmp = compareBaselines(env.state.baseline, await sample());
    for (let i = 1; i < BASELINE_BREACH_SAMPLES && cmp.status === "FAIL"; i++) {
      cmp = compareBaselines(env.state.baseline, await sample());
    }
    env.state.checks = mergeChecks(env.state.checks ?? [], [cmp]);
    if (cmp.status === "FAIL") {
      throw new FailedPreconditionError(
        `baseline breached after cutover in ${BASELINE_BREACH_SAMPLES} consecutive samples of ${env.baselineSampleMs} ms: ${cmp.measured}`,
      );
    }
  }
  return { to: "COMPLETED", reason: "the target serves reads and writes" };
};

/**
 * From VERIFYING on, while reverse replication runs, the target records the DDL statements it runs, so that rollback
 * readiness shows a schema change's statement beside its shape. A failure costs only the statements (the shapes are
 * compared regardless): said, not fatal.
 */
async function captureDdl(env: StepEnv): Promise<void> {
  const dbs = env.state.reverseDatabases ?? [];
  if (dbs.length === 0 || env.state.reverse?.stoppedReason) return;
  try {
    await env.activities.schema.captureDdl(env.provider, env.target, dbs);
  } catch (e) {
    await env.report(
      check("rollback.ddl_capture", "WARN", {
        measured: e instanceof Error ? e.message : String(e),
        threshold: `an event trigger on ${env.target.id} records its DDL statements`,
        message: "schema changes on the target are still detected by shape, but their statements will not be shown",
        remedy: "nothing required; the role pgshift uses needs the right to create event triggers for the statements",
      }),
    );
  }
}

/** One step per phase that does work; COMPLETED waits for an operator, final phases have none. */
export const STEPS: Partial<Record<PhaseName, Step>> = {
  PENDING: async () => ({ to: "PREFLIGHT", reason: "started" }),
  PREFLIGHT: preflight,
  PROVISIONING: provisioning,
  REPLICATING: replicating,
  READY_FOR_CUTOVER: readyForCutover,
  CDC_PREPARE: cdcPrepare,
  QUIESCING: quiescing,
  FINAL_SYNC: finalSync,
  PROMOTING: promoting,
  CDC_RESTORE: cdcRestore,
  ROUTING: routing,
  VERIFYING: verifying,
  ROLLING_BACK: rollingBack,
};
