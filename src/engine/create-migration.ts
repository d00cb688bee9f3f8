import { randomUUID } from "node:crypto";
import { FailedPreconditionError } from "../domain/errors.js";
import { instanceKey, providerName, specToJson, targetRef } from "../domain/spec.js";
import type { MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import type { Provider } from "../providers/provider.js";
import type { MigrationRepo, MigrationRow } from "../store/migration-repo.js";

export interface CreateMigrationDeps {
  repo: MigrationRepo;
  providers: (spec: MigrationSpec) => Provider;
}

/**
 * Records a new migration of a normalized, authorized spec. A retry of a request already taken returns what it made
 * (whose target exists by now, made by it); otherwise a target that exists already is refused: pgshift creates the
 * target itself and never adopts one.
 */
export async function createMigration(
  { repo, providers }: CreateMigrationDeps,
  spec: MigrationSpec,
  requestId: string | null,
  actor: string,
): Promise<{ row: MigrationRow; created: boolean }> {
  const retry = requestId ? await repo.byRequestId(requestId) : undefined;
  const target = targetRef(spec);
  if (!retry && (await providers(spec).exists(target))) {
    throw new FailedPreconditionError(
      `spec.target.id "${target.id}" names an instance that exists already; pgshift creates the target itself and never adopts, overwrites or deletes an existing one: name a new instance`,
    );
  }
  return repo.create({
    id: randomUUID(),
    requestId,
    databaseName: spec.databaseName,
    provider: providerName(spec.provider),
    sourceKey: instanceKey(spec.provider, spec.source!),
    targetKey: instanceKey(spec.provider, spec.target!),
    spec: specToJson(spec),
    actor,
  });
}
