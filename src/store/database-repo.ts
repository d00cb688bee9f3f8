import { sql, type Kysely, type Selectable } from "kysely";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../domain/errors.js";
import type { DatabaseEntry } from "../domain/inventory.js";
import { TERMINAL_PHASES } from "../domain/phases.js";
import { providerName } from "../domain/spec.js";
import type { Database, DatabasesTable } from "./schema.js";

export type DatabaseRow = Selectable<DatabasesTable>;

export interface DatabaseFilter {
  team?: string;
  labels: Record<string, string>;
  pageSize: number;
  pageToken?: string;
}

function decodeToken(token: string): string {
  const name = Buffer.from(token, "base64url").toString("utf8");
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(name)) {
    throw new InvalidArgumentError(
      "page_token is not one this service issued; pass the next_page_token of a previous ListDatabases response, or leave it empty",
    );
  }
  return name;
}

/** The inventory: logical databases, the instances that serve them (each serving one at most), their teams and labels. */
export class DatabaseRepo {
  constructor(
    private readonly db: Kysely<Database>,
    /** How a key of one of a migration's instances reads, to find the migrations an instance change would strand. */
    private readonly keyOfSource: (spec: unknown) => string,
  ) {}

  async get(name: string): Promise<DatabaseRow | undefined> {
    return this.db.selectFrom("databases").selectAll().where("name", "=", name).executeTakeFirst();
  }

  /** The owning team of each of these databases that is registered. */
  async teamsOf(names: string[]): Promise<Map<string, string>> {
    if (names.length === 0) return new Map();
    const rows = await this.db.selectFrom("databases").select(["name", "team"]).where("name", "in", names).execute();
    return new Map(rows.map((r) => [r.name, r.team]));
  }

  /** The database an instance is registered to, if any. */
  async ownerOf(key: string): Promise<string | undefined> {
    const r = await this.db
      .selectFrom("database_instances")
      .select("database_name")
      .where("instance_key", "=", key)
      .executeTakeFirst();
    return r?.database_name;
  }

  /**
   * Registers a database, or makes its entry what is asked. Refused: an instance registered to another database
   * (ALREADY_EXISTS, naming both), and dropping the instance a live migration of this database takes as its source.
   */
  async register(e: DatabaseEntry, actor: string): Promise<{ row: DatabaseRow; created: boolean }> {
    try {
      return await this.db.transaction().execute(async (trx) => {
        // Registrations of one name are serialized; different names meet on database_instances' key.
        await sql`select pg_advisory_xact_lock(hashtext('pgshift.database:' || ${e.name}))`.execute(trx);
        const taken = await trx
          .selectFrom("database_instances")
          .selectAll()
          .where("instance_key", "in", e.keys)
          .where("database_name", "<>", e.name)
          .executeTakeFirst();
        if (taken) throw this.takenError(taken.instance_key, taken.database_name, e.name);
        const live = await trx
          .selectFrom("migrations")
          .select(["id", "spec"])
          .where("database_name", "=", e.name)
          .where("phase", "not in", [...TERMINAL_PHASES])
          .execute();
        for (const m of live) {
          const key = this.keyOfSource(m.spec);
          if (!e.keys.includes(key)) {
            throw new FailedPreconditionError(
              `migration ${m.id} of ${e.name} is live and takes ${key} as its source: keep that instance in database.instances until it ends`,
            );
          }
        }
        const before = await trx.selectFrom("databases").select("name").where("name", "=", e.name).executeTakeFirst();
        const values = {
          provider: providerName(e.provider),
          instances: JSON.stringify(e.instances),
          team: e.team,
          labels: JSON.stringify(e.labels),
          registered_by: actor,
        };
        const row = before
          ? await trx
              .updateTable("databases")
              .set({ ...values, updated_at: sql<Date>`now()` })
              .where("name", "=", e.name)
              .returningAll()
              .executeTakeFirstOrThrow()
          : await trx
              .insertInto("databases")
              .values({ name: e.name, ...values })
              .returningAll()
              .executeTakeFirstOrThrow();
        await trx
          .deleteFrom("database_instances")
          .where("database_name", "=", e.name)
          .where("instance_key", "not in", e.keys)
          .execute();
        await trx
          .insertInto("database_instances")
          .values(e.keys.map((k) => ({ instance_key: k, database_name: e.name })))
          .onConflict((c) => c.column("instance_key").doNothing())
          .execute();
        return { row, created: !before };
      });
    } catch (err) {
      // Two registrations racing for one instance: the key decides, and the loser learns who holds it.
      if ((err as { code?: string }).code === "23505") {
        for (const k of e.keys) {
          const owner = await this.ownerOf(k);
          if (owner && owner !== e.name) throw this.takenError(k, owner, e.name);
        }
      }
      throw err;
    }
  }

  private takenError(key: string, owner: string, asked: string): AlreadyExistsError {
    return new AlreadyExistsError(
      `instance ${key} is registered to database "${owner}"; an instance serves one database: remove it from "${owner}" first, or register it there instead of "${asked}"`,
    );
  }

  async list(f: DatabaseFilter): Promise<{ rows: DatabaseRow[]; nextPageToken: string }> {
    let q = this.db.selectFrom("databases").selectAll();
    if (f.team) q = q.where("team", "=", f.team);
    if (Object.keys(f.labels).length > 0) q = q.where(sql<boolean>`labels @> ${JSON.stringify(f.labels)}::jsonb`);
    if (f.pageToken) q = q.where("name", ">", decodeToken(f.pageToken));
    const rows = await q
      .orderBy("name")
      .limit(f.pageSize + 1)
      .execute();
    const more = rows.length > f.pageSize;
    const page = rows.slice(0, f.pageSize);
    return { rows: page, nextPageToken: more ? Buffer.from(page[page.length - 1]!.name).toString("base64url") : "" };
  }

  async require(name: string): Promise<DatabaseRow> {
    const row = await this.get(name);
    if (!row)
      throw new NotFoundError(
        `database "${name}" is not registered; an admin registers it with RegisterDatabase (pgshift ctl register)`,
      );
    return row;
  }
}
