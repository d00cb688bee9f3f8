import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DatabaseSchema, type Database, type MigrationSpec } from "../gen/migration/v1/migration_pb.js";
import { FailedPreconditionError, InvalidArgumentError, PermissionDeniedError } from "../domain/errors.js";
import { checkLabels, normalizeRegistration, ownershipKey, sourceOf } from "../domain/inventory.js";
import { ProviderKind } from "../domain/spec.js";
import type { Action } from "../security/policy.js";
import type { DatabaseRepo, DatabaseRow } from "../store/database-repo.js";
import type { MigrationRow } from "../store/migration-repo.js";
import type { Authorizer } from "./authorize.js";
import { identityOf } from "./caller.js";

const MAX_PAGE = 500;
const DEFAULT_PAGE = 50;

export function databaseToProto(r: DatabaseRow): Database {
  return create(DatabaseSchema, {
    name: r.name,
    provider: r.provider === "aws" ? ProviderKind.AWS : ProviderKind.LOCAL,
    instances: r.instances,
    team: r.team,
    labels: r.labels,
    registeredBy: r.registered_by,
    updatedAt: timestampFromDate(r.updated_at),
  });
}

/**
 * Authorization on the inventory: a call reaches an instance only through the database it is registered to, so a
 * grant on database names never reaches another database's instance, whatever name a caller types.
 */
export class Inventory {
  constructor(
    readonly repo: DatabaseRepo,
    private readonly authz: Authorizer,
    private readonly defaultRegion: string | undefined,
  ) {}

  sourceKey(spec: MigrationSpec): string {
    return ownershipKey(spec.provider, spec.source!, this.defaultRegion);
  }

  /**
   * A spec's call (create, preflight): its source must be an instance of the database it names, its target no other
   * database's instance, and the caller needs `action` on that database. A service without a policy authorizes no
   * one: there an instance nobody registered may be migrated under any name, and a registered one only under its own.
   */
  async admitSpec(ctx: HandlerContext, spec: MigrationSpec, action: Action, what: string): Promise<void> {
    const source = this.sourceKey(spec);
    const target = ownershipKey(spec.provider, spec.target!, this.defaultRegion);
    const [owner, targetOwner, registered] = await Promise.all([
      this.repo.ownerOf(source),
      this.repo.ownerOf(target),
      this.repo.get(spec.databaseName),
    ]);
    if (owner && owner !== spec.databaseName) this.deny(ctx, what, source, owner, spec.databaseName);
    if (targetOwner && targetOwner !== spec.databaseName) this.deny(ctx, what, target, targetOwner, spec.databaseName);
    await this.authz.require(ctx, action, spec.databaseName, what, source);
    if (owner) return;
    if (registered) {
      throw new FailedPreconditionError(
        `instance ${source} is not one of database "${spec.databaseName}"'s instances (${registered.instances.map((i) => i.id).join(", ")}); an admin adds it with RegisterDatabase (pgshift ctl register)`,
      );
    }
    if (!this.authz.open) {
      throw new FailedPreconditionError(
        `database "${spec.databaseName}" is not registered; an admin registers it, with ${source} among its instances, with RegisterDatabase (pgshift ctl register)`,
      );
    }
  }

  /**
   * An action on a migration: the role on its database, and on whichever database its source is registered to now
   * (a migration made before its instance was registered elsewhere does not carry a grant across).
   */
  async admitMigration(ctx: HandlerContext, row: MigrationRow, action: Action, what: string): Promise<void> {
    const source = ownershipKey(...sourceOf(row.spec), this.defaultRegion);
    await this.authz.require(ctx, action, row.database_name, what, source);
    const owner = await this.repo.ownerOf(source);
    if (owner && owner !== row.database_name) await this.authz.require(ctx, action, owner, what, source);
  }

  private deny(ctx: HandlerContext, what: string, instance: string, owner: string, named: string): never {
    throw new PermissionDeniedError(
      `${identityOf(ctx)} may not ${what} that reaches instance ${instance}: it is registered to database "${owner}", not "${named}"; a migration of it names "${owner}" and needs a role there`,
    );
  }

  async register(ctx: HandlerContext, db: Database | undefined, actor: string) {
    const entry = normalizeRegistration(db, this.defaultRegion);
    await this.authz.require(ctx, "administer", entry.name, "register a database");
    const { row, created } = await this.repo.register(entry, actor);
    return { database: databaseToProto(row), created };
  }

  async list(
    ctx: HandlerContext,
    req: { team: string; labels: Record<string, string>; pageSize: number; pageToken: string },
  ) {
    if (req.pageSize > MAX_PAGE)
      throw new InvalidArgumentError(`page_size must be at most ${MAX_PAGE}; got ${req.pageSize}`);
    const { rows, nextPageToken } = await this.repo.list({
      team: req.team || undefined,
      labels: checkLabels("labels", req.labels),
      pageSize: req.pageSize || DEFAULT_PAGE,
      pageToken: req.pageToken || undefined,
    });
    const may = await this.authz.viewable(
      ctx,
      rows.map((r) => r.name),
    );
    return { databases: rows.filter((r) => may(r.name)).map(databaseToProto), nextPageToken };
  }
}
