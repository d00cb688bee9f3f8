import { ConnectError } from "@connectrpc/connect";
import { check } from "../domain/check.js";
import { HoldForOperatorError } from "../domain/errors.js";
import { FORWARD } from "../domain/transitions.js";
import { removedText } from "./operator-actions.js";
import { cdcContext, type Step } from "./step-env.js";

/**
 * ROLLING_BACK: sends everything back to the source. Before promotion the
 * target is just removed; after it, the promoted target is fenced, its writes
 * drained to the source, CDC consumers moved back, the source unfenced and
 * traffic routed back; the promoted target is kept, fenced, for inspection.
 */
export const rollingBack: Step = async (env) => {
  const from = env.state.rollbackFrom ?? "PENDING";
  const promoted = FORWARD.indexOf(from) >= FORWARD.indexOf("PROMOTING");
  const reverse = promoted && (env.state.reverseDatabases?.length ?? 0) > 0;
  const { cdc, reverse: rev } = env.activities;
  if (promoted) {
    // Two writable primaries must never both take traffic: the promoted target stops taking any, or nothing goes back.
    try {
      await env.provider.fence(env.target);
    } catch (e) {
      const why = ConnectError.from(e).rawMessage;
      await env.report(
        check("rollback.fence_target", "FAIL", {
          measured: why,
          threshold: `${env.target.id} fenced before traffic goes back to ${env.source.id}`,
          message: "the promoted target could not be fenced, so traffic stays on it: two writable primaries must never both take writes",
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
    await rev.drain(env.provider, env.source, env.target, Math.max(5_000, env.remainingMs));
  }
  if (promoted) {
    const warning = await cdc.rollbackSlots(cdcContext(env), Math.max(5_000, env.remainingMs));
    if (warning) await env.report(warning);
  }
  await env.provider.unfence(env.source);
  const sourceEp = await env.provider.endpoint(env.source);
  const current = await env.router.current(env.spec.databaseName);
  if (current && (current.endpoint.host !== sourceEp.host || current.endpoint.port !== sourceEp.port)) {
    await env.router.route(env.spec.databaseName, sourceEp, 120_000, { tolerateNack: true });
  }
  await cdc.resumeOnSource(cdcContext(env));
  if (reverse) await rev.stop(env.provider, env.source, env.target);
  const removed = promoted ? undefined : await env.provider.deleteReplica(env.source, env.target, env.row.id);
  return {
    to: "ROLLED_BACK",
    reason: promoted
      ? `traffic routed back to ${env.source.id}, which is unfenced${reverse ? " and holds every write made on the target" : ""}; ${env.target.id} kept, fenced, for inspection`
      : `${env.source.id} unfenced and ${removedText(env.target.id, removed!)}`,
  };
};
