import { ConnectError } from "@connectrpc/connect";
import { check, formatBytes } from "../domain/check.js";
import { estimateText } from "../domain/rollback-readiness.js";
import { driftVerdict, sampleReverse, startReverse } from "./reverse-watch.js";
import { HoldForOperatorError } from "../domain/errors.js";
import { FORWARD } from "../domain/transitions.js";
import { removedText } from "./operator-actions.js";
import { sleep } from "../support/sleep.js";
import { cdcContext, type Step, type StepEnv } from "./step-env.js";
import { verifyData, verifyKey } from "./data-verification.js";

/** After routing back, how long the rollback looks for CDC readers on the source before it ends (PostgreSQL's clients retry every 5 s). */
const READER_WATCH_MS = 6_000;

/**
 * A rollback from PROMOTING may find the promotion never happened (AWS refused PromoteReadReplicaDBCluster, say): the
 * target is still a replica that took no write, and the rollback is one from before promotion. Asked of the target
 * once and recorded; a target that cannot be asked counts as promoted (it is fenced before anything goes back).
 */
async function promotedInPromoting(env: StepEnv): Promise<boolean> {
  if (env.state.rollbackPromoted === undefined) {
    env.state.rollbackPromoted = await env.provider
      .describe(env.target)
      .then((d) => !d.inRecovery)
      .catch(() => true);
    await env.save();
  }
  return env.state.rollbackPromoted;
}

/**
 * ROLLING_BACK: sends everything back to the source. Before promotion the
 * target is just removed; after it, the promoted target is fenced, its writes
 * drained to the source, CDC consumers moved back, the source unfenced and
 * traffic routed back; the promoted target is kept, fenced, for inspection.
 */
export const rollingBack: Step = async (env) => {
  const from = env.state.rollbackFrom ?? "PENDING";
  const promoted =
    FORWARD.indexOf(from) > FORWARD.indexOf("PROMOTING") || (from === "PROMOTING" && (await promotedInPromoting(env)));
  const reverse =
    promoted &&
    (env.state.reverseDatabases?.length ?? 0) > 0 &&
    !env.state.reverse?.stoppedReason &&
    !env.state.rollbackReverseEnded;
  const { cdc, reverse: rev } = env.activities;
  // Attached after routing; a rollback that came before (a failure in ROUTING) attaches it first, on the slots
  // reserved at promotion, so nothing the target took since is left behind.
  if (reverse) await startReverse(env);
  // A schema change on one side only would stop the drain half way: found before the target is fenced, it holds the
  // rollback with traffic still on the target, until an operator makes both sides match.
  if (reverse) await refuseOnSchemaDrift(env);
  if (reverse) await coverNewTables(env);
  // Said before the fence: what the drain will cost, after waiting (writes still flowing on the target) for a small backlog.
  if (reverse) await awaitSmallBacklog(env);
  // Large objects copied back once while the target still takes writes, so that only what changes meanwhile is
  // copied with writes stopped (the source is fenced: nothing reads them there yet); and the sessions the
  // comparison after the rollback takes its snapshots on opened, so that taking them costs one round trip.
  if (reverse) {
    const dbs = env.state.reverseDatabases!;
    await Promise.all([
      carryLargeObjects(env, "before the target was fenced"),
      rev.flushCommits(env.provider, env.source, dbs),
      env.activities.verify.open(env.provider, env.source, env.target, dbs, verifyKey(env, "rollback")).catch(() => {}),
    ]);
  }
  if (promoted) {
    // Two writable primaries must never both take traffic: the promoted target stops taking any, or nothing goes back.
    try {
      await env.trace("fence_target", () => env.provider.fence(env.target));
    } catch (e) {
      const why = ConnectError.from(e).rawMessage;
      await env.report(
        check("rollback.fence_target", "FAIL", {
          measured: why,
          threshold: `${env.target.id} fenced before traffic goes back to ${env.source.id}`,
          message:
            "the promoted target could not be fenced, so traffic stays on it: two writable primaries must never both take writes",
          remedy: `make ${env.target.id} reachable (or stop its clients yourself), then ResumeMigration; the rollback carries on from here`,
        }),
      );
      throw new HoldForOperatorError(
        `rollback holds: ${env.target.id} could not be fenced (${why}); traffic stays on it until an operator fixes that and resumes`,
      );
    }
  }
  if (reverse) {
    // Lossless: with the target's writes stopped, let the source apply all of them and carry sequences over.
    await env.trace("drain", () => rev.drain(env.provider, env.source, env.target, Math.max(5_000, env.remainingMs)));
    // Logical replication carries no large objects: the source is made to hold the target's.
    await carryLargeObjects(env, "with the target fenced");
  }
  if (promoted) {
    const warning = await env.trace("cdc_slots_back", () =>
      cdc.rollbackSlots(cdcContext(env), Math.max(5_000, env.remainingMs)),
    );
    if (warning) await env.report(warning);
    // The point the comparison after the rollback is made at: the source as drained, the target as fenced. Only
    // while the source is still fenced (a rerun after the unfence would see later writes on it).
    if (reverse && (await env.provider.isFenced(env.source))) {
      await env.activities.verify
        .hold(env.provider, env.source, env.target, env.state.reverseDatabases!, verifyKey(env, "rollback"))
        .catch(() => {});
    }
  } else {
    // Before the source takes writes again: consumers handed over at the fence do not see again what they were sent.
    await cdc.settleOnSource(cdcContext(env));
  }
  await env.trace("unfence_source", () => env.provider.unfence(env.source));
  const sourceEp = await env.provider.endpoint(env.source);
  const current = await env.router.current(env.spec.databaseName);
  if (current && (current.endpoint.host !== sourceEp.host || current.endpoint.port !== sourceEp.port)) {
    await env.router.route(env.spec.databaseName, sourceEp, 120_000, { tolerateNack: true, trace: env.trace });
  }
  await env.trace("cdc_resume", () => cdc.resumeOnSource(cdcContext(env), { watch: true }));
  if (reverse) {
    await rev.stop(env.provider, env.source, env.target);
    env.state.rollbackReverseEnded = true;
    await env.save();
  }
  // Writes flow again; the migration ends here, so readers are looked for on the source for a few seconds, not waited on.
  for (const until = Date.now() + READER_WATCH_MS; env.state.cdc?.awaitingReaders && Date.now() < until;) {
    if (!(await cdc.observeReaders(cdcContext(env)))) await sleep(250, env.signal);
  }
  cdc.closeReaderWatch(cdcContext(env));
  // Writes flow on the source again: the comparison reads the snapshots held at the drain point, throttled.
  if (reverse) await verifyData(env, "rollback");
  // Its sessions closed, what the source's fence left behind for them goes too (unfence is idempotent).
  await env.provider.unfence(env.source);
  const removed = promoted ? undefined : await env.provider.deleteReplica(env.source, env.target, env.row.id);
  return {
    to: "ROLLED_BACK",
    reason: promoted
      ? `traffic routed back to ${env.source.id}, which is unfenced${reverse ? " and holds every write made on the target" : ""}; ${env.target.id} kept, fenced, for inspection`
      : `${env.source.id} unfenced and ${removedText(env.target.id, removed!)}`,
  };
};

/** Makes the source's large objects the target's (logical replication carries none); said when any moved. */
async function carryLargeObjects(
  env: StepEnv,
  when: "before the target was fenced" | "with the target fenced",
): Promise<void> {
  const lo = await env.activities.reverse.carryLargeObjects(
    env.provider,
    env.source,
    env.target,
    env.state.reverseDatabases!,
  );
  if (lo.copied + lo.removed === 0) return;
  await env.report(
    check("rollback.large_objects", "PASS", {
      measured: `${lo.copied} large object(s) copied back (${formatBytes(lo.bytes)}), ${lo.removed} removed on the source, ${when}`,
      threshold: "the source holds the target's large objects",
    }),
  );
}

/** Holds a rollback, before anything is fenced, while the two sides' tables differ in shape (named in the check). */
async function refuseOnSchemaDrift(env: StepEnv): Promise<void> {
  const verdict = await driftVerdict(env);
  const last = env.state.checks?.find((c) => c.name === verdict.name);
  if (verdict.status === "PASS") {
    if (last && last.status !== "PASS") await env.report(verdict);
    return;
  }
  await env.report(verdict);
  throw new HoldForOperatorError(
    `rollback holds before fencing ${env.target.id}, traffic still on it: ${verdict.measured}; ${verdict.remedy}, then ResumeMigration`,
  );
}

/** Tables created on both sides since the cutover started are not in reverse replication yet: added, their rows copied, before the fence. */
async function coverNewTables(env: StepEnv): Promise<void> {
  const added = await env.activities.reverse.coverNewTables(
    env.provider,
    env.source,
    env.target,
    env.state.reverseDatabases ?? [],
    NEW_TABLE_COPY_MS,
  );
  if (added.length === 0) return;
  await env.report(
    check("rollback.new_tables", "PASS", {
      measured: `added to reverse replication, their rows copied to ${env.source.id}: ${added.join(", ")}`,
      threshold: "every table on the target carried back",
      message: "tables created after the cutover started are carried back too",
    }),
  );
}

/**
 * Before a rollback fences the target, the reverse backlog is what the
 * source must apply with writes stopped: wait, while the target still takes
 * writes, until it is at most rollback_policy.fence_below_lag_bytes (at most
 * fence_wait), and say what fencing now costs. A backlog that cannot be read
 * (the target is down) does not hold the rollback up.
 */
async function awaitSmallBacklog(env: StepEnv): Promise<void> {
  const limit = env.policy.fenceBelowLagBytes;
  const started = Date.now();
  let said = false;
  while (true) {
    let sample;
    try {
      sample = await sampleReverse(env);
    } catch {
      return;
    }
    const waited = Date.now() - started;
    const small = sample.lagBytes <= limit;
    if (small || waited >= env.policy.fenceWaitMs) {
      await env.report(
        check("rollback.fence_backlog", small ? "PASS" : "WARN", {
          measured: `reverse backlog ${formatBytes(sample.lagBytes)} when the target was fenced, after waiting ${waited} ms; applying it: ${estimateText(env.state.reverse!)}`,
          threshold: `≤ ${formatBytes(limit)} before fencing, waiting at most ${env.policy.fenceWaitMs} ms (rollback_policy)`,
          message: small
            ? "the backlog was small when writes stopped"
            : "the backlog did not fall below the limit in time: writes stop while the source applies it",
          remedy: small
            ? ""
            : "reduce the write load on the target before a rollback, or raise rollback_policy.fence_wait",
        }),
      );
      return;
    }
    if (!said) {
      said = true;
      await env.report(
        check("rollback.fence_backlog", "WARN", {
          measured: `reverse backlog ${formatBytes(sample.lagBytes)}; fencing now would stop writes for ${estimateText(env.state.reverse!)}`,
          threshold: `≤ ${formatBytes(limit)} before fencing (rollback_policy.fence_below_lag_bytes)`,
          message: `the rollback waits, up to ${env.policy.fenceWaitMs} ms, with ${env.target.id} still taking writes, for the backlog to shrink before it fences`,
          remedy: "nothing: it fences as soon as the backlog is small (reduce the write load to make that sooner)",
        }),
      );
    }
    await sleep(BACKLOG_POLL_MS, env.signal);
  }
}

const BACKLOG_POLL_MS = 200;
/** How long a rollback waits for new tables' rows to be copied before it tries again (a rollback is never given up). */
const NEW_TABLE_COPY_MS = 60_000;
