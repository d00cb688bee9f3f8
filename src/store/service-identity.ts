import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { writeFileAtomic } from "../support/atomic-file.js";

/** A replica's identity in the store, held exclusively for as long as its process lives. */
export interface ReplicaIdentity {
  id: string;
  /** Whether the preferred identity was ours to take (so whatever holds its name is a dead incarnation of us). */
  preferred: boolean;
  close(): Promise<void>;
}

/** The identity kept in the data dir: the same across restarts on it. */
export function dataDirIdentity(dataDir: string): string {
  const file = join(dataDir, "replica-id");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const id = randomUUID();
  writeFileAtomic(file, id + "\n", { mode: 0o644 });
  return id;
}

async function tryLock(client: pg.Client, id: string): Promise<boolean> {
  const r = await client.query<{ ok: boolean }>("select pg_try_advisory_lock(hashtextextended($1, 0)) as ok", [
    `pgshift-replica:${id}`,
  ]);
  return r.rows[0]!.ok;
}

/**
 * Claims `preferred` with a session advisory lock on a connection of its own:
 * PostgreSQL frees it the moment the process (or its connection) dies, so
 * holding it proves that no live process of that identity exists. When a
 * live replica holds it already (two replicas sharing one data dir), a fresh
 * identity is used instead.
 */
export async function claimIdentity(connection: pg.ClientConfig, preferred: string): Promise<ReplicaIdentity> {
  const client = new pg.Client({ ...connection, application_name: "pgshift-identity" });
  client.on("error", () => {});
  await client.connect();
  let id = preferred;
  const mine = await tryLock(client, preferred);
  if (!mine) {
    id = randomUUID();
    await tryLock(client, id);
  }
  return { id, preferred: mine, close: () => client.end().catch(() => {}) };
}
