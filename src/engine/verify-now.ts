import {
  compareConverging,
  compareDatabases,
  dataVerdict,
  type CompareReport,
  type Convergence,
} from "../checks/data-compare.js";
import { readSchemaInventory } from "../checks/schema-inventory.js";
import type { CheckResult } from "../domain/check.js";
import { FailedPreconditionError } from "../domain/errors.js";
import { sourceRef, specFromJson, targetRef } from "../domain/spec.js";
import type { MigrationStateJson } from "../domain/state.js";
import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import type { Provider } from "../providers/provider.js";
import { awaitReverseApplied } from "../replication/reverse.js";
import type { MigrationRepo } from "../store/migration-repo.js";

/** Between two ranges' checksums of an operator's comparison: the application comes first. */
const THROTTLE_MS = 5;
/** How long one range waits for the side that follows to catch up before it is read again. */
const CATCH_UP_MS = 10_000;

/**
 * An operator's comparison of source and target now (VerifyMigration): before cutover the replica follows the
 * source, after it the source follows the target through reverse replication; a range that still differs after
 * the follower caught up three times is named. The verdict is logged as a CHECK_RESULT event. Reads only.
 */
export async function verifyNow(
  repo: MigrationRepo,
  providers: (spec: MigrationSpec) => Provider,
  id: string,
  actor: string,
  signal: AbortSignal,
): Promise<{ check: CheckResult; report: CompareReport }> {
  const row = await repo.get(id);
  const spec = specFromJson(row.spec);
  const state = (row.state ?? {}) as MigrationStateJson;
  const provider = providers(spec);
  const [source, target] = [sourceRef(spec), targetRef(spec)];
  let conv: Convergence;
  let what: string;
  if (row.phase === "REPLICATING" || row.phase === "READY_FOR_CUTOVER") {
    what = "now, the replica caught up with the source";
    conv = {
      leader: "source",
      leaderLsn: () => provider.currentLsn(source),
      caughtUp: (lsn) => provider.waitForReplay(target, lsn, CATCH_UP_MS),
    };
  } else if (row.phase === "COMPLETED" && (state.reverseDatabases ?? []).length > 0 && !state.reverse?.stoppedReason) {
    what = "now, the source caught up with the target through reverse replication";
    conv = {
      leader: "target",
      leaderLsn: () => provider.currentLsn(target),
      caughtUp: async (lsn) => void (await awaitReverseApplied(provider, source, target, lsn, CATCH_UP_MS)),
    };
  } else {
    throw new FailedPreconditionError(
      `migration ${id} is ${row.phase}${row.phase === "COMPLETED" ? " without reverse replication" : ""}: a comparison now needs one side following the other (REPLICATING, READY_FOR_CUTOVER, or COMPLETED with reverse replication); the comparisons made at cutover and at a rollback are its verify.data events`,
    );
  }
  const databases =
    state.reverseDatabases ??
    (await readSchemaInventory(provider, source)).databases
      .filter((d) => d.identified.length + d.keyless.length > 0)
      .map((d) => d.database);
  const report = await compareDatabases(databases, signal, (db, sig) =>
    compareConverging(db, provider.sql(source, db), provider.sql(target, db), conv, {
      throttleMs: THROTTLE_MS,
      signal: sig,
    }),
  );
  const check = dataVerdict(report, what, row.phase === "COMPLETED" ? (state.insertOnlyTables ?? []) : []);
  await repo.logCheck(id, actor, check);
  return { check, report };
}
