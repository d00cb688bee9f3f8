import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import { sourceRef, specFromJson } from "../domain/spec.js";
import { formatBytes } from "../domain/check.js";
import { isTerminal } from "../domain/phases.js";
import { FailedPreconditionError, NotFoundError } from "../domain/errors.js";
import type { Provider } from "../providers/provider.js";
import type { MigrationRepo, MigrationRow } from "../store/migration-repo.js";

/**
 * Drops an inactive logical slot on a migration's source. Never done by the
 * engine on its own: the slot belongs to somebody's change stream, and only
 * an operator may decide it is abandoned.
 */
export async function dropInactiveSlot(
  repo: MigrationRepo,
  providers: (spec: MigrationSpec) => Provider,
  id: string,
  slot: string,
  actor: string,
  reason: string,
): Promise<{ row: MigrationRow; retained: bigint }> {
  if (!slot) throw new FailedPreconditionError("slot_name is required");
  const row = await repo.get(id);
  if (isTerminal(row.phase))
    throw new FailedPreconditionError(
      `migration ${id} is ${row.phase}; slots of its source are no longer its business`,
    );
  const spec = specFromJson(row.spec);
  const provider = providers(spec);
  const source = sourceRef(spec);
  const info = (await provider.describe(source)).slots.find((s) => s.name === slot);
  if (!info) throw new NotFoundError(`${source.id} has no replication slot named "${slot}"`);
  if (info.type !== "logical")
    throw new FailedPreconditionError(
      `slot ${slot} is a physical slot; only inactive logical slots are dropped this way`,
    );
  if (info.active) throw new FailedPreconditionError(`slot ${slot} is being read by a consumer; it is not stale`);
  const retained = await provider.dropInactiveSlot(source, slot);
  const updated = await repo.logOperatorEvent(
    id,
    actor,
    `dropped inactive logical slot ${slot} on ${source.id} (it retained ${formatBytes(retained)} of WAL)${reason ? `: ${reason}` : ""}`,
    {
      action: "drop_inactive_slot",
      slot,
    },
  );
  return { row: updated, retained };
}
