import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { writeFileAtomic } from "../../support/atomic-file.js";
import { InvalidInstanceStateError } from "../errors.js";

const escapeIdent = (name: string) => pg.escapeIdentifier(name);

/**
 * The one role a fenced cluster admits: pgshift's alone, made by the fence with a fresh password that only this
 * service's files hold, and dropped when the fence is lifted. The superuser a person or an application may share
 * with pgshift is refused like any other role while the fence stands.
 */
export const FENCE_ROLE = "pgshift_fence";
const MARK = "made by pgshift's fence for its own sessions; dropped when the fence is lifted";
const FILE = "pgshift-fence-role.json";

/** The fence role's password, while the cluster in `dir` is fenced (or a fence is being put up or taken down). */
export function fenceCredentials(dir: string): { user: string; password: string } | undefined {
  const path = join(dir, FILE);
  if (!existsSync(path)) return undefined;
  return { user: FENCE_ROLE, password: (JSON.parse(readFileSync(path, "utf8")) as { password: string }).password };
}

/** A SCRAM-SHA-256 verifier, so that the password itself never appears in a statement (or a server log). */
function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(password.normalize("NFKC"), salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** Whether the role exists, and whether pgshift made it; a role of that name pgshift did not make is never touched. */
async function ours(db: pg.Client, instance: string): Promise<boolean> {
  const r = await db.query<{ mark: string | null }>(
    "select shobj_description(oid, 'pg_authid') as mark from pg_roles where rolname = $1",
    [FENCE_ROLE],
  );
  if (r.rowCount === 0) return false;
  if (r.rows[0]!.mark !== MARK) {
    throw new InvalidInstanceStateError(
      instance,
      `${instance} has a role named ${FENCE_ROLE} that pgshift did not make; rename it, pgshift's fence needs that name`,
    );
  }
  return true;
}

/** Makes the role (or gives it a fresh password), then records the password: retried after a crash, it ends the same. */
export async function createFenceRole(db: pg.Client, instance: string, dir: string): Promise<void> {
  if (fenceCredentials(dir)) return;
  const password = randomBytes(24).toString("base64url");
  const verb = (await ours(db, instance)) ? "alter" : "create";
  await db.query(`${verb} role ${escapeIdent(FENCE_ROLE)} login superuser password '${scramVerifier(password)}'`);
  await db.query(`comment on role ${escapeIdent(FENCE_ROLE)} is '${MARK.replace(/'/g, "''")}'`);
  writeFileAtomic(join(dir, FILE), JSON.stringify({ password }), { mode: 0o600 });
}

/**
 * Takes the role out of use: no more logins, what it created (a subscription made while the source was fenced)
 * handed to `heir` in every database, its password forgotten; then dropped, once no session of it is left (a
 * snapshot pgshift holds for a comparison may still be one: a later call drops it). Run as `heir`, unfenced.
 */
export async function dropFenceRole(
  connect: (database: string) => Promise<pg.Client>,
  instance: string,
  dir: string,
  heir: string,
): Promise<void> {
  const db = await connect("postgres");
  try {
    if (await ours(db, instance)) {
      await db.query(`alter role ${escapeIdent(FENCE_ROLE)} nologin`);
      const dbs = await db.query<{ datname: string }>(
        "select datname from pg_database where datallowconn order by datname",
      );
      for (const { datname } of dbs.rows) {
        const c = datname === "postgres" ? db : await connect(datname);
        try {
          await c.query(`reassign owned by ${escapeIdent(FENCE_ROLE)} to ${escapeIdent(heir)}`);
        } finally {
          if (c !== db) await c.end().catch(() => {});
        }
      }
      const busy = await db.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where usename = $1", [
        FENCE_ROLE,
      ]);
      if (busy.rows[0]!.n === 0) await db.query(`drop role ${escapeIdent(FENCE_ROLE)}`);
    }
  } finally {
    await db.end().catch(() => {});
  }
  rmSync(join(dir, FILE), { force: true });
}
