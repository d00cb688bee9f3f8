import { sql, type Kysely } from "kysely";
import type { Database } from "./schema.js";

export interface Lease {
  name: string;
  holder: string;
  /** Fencing token: greater for every new holder, so a stale holder's writes can be refused. */
  token: string;
}

/**
 * Expiring leases in the state store. A replica drives a migration only while
 * it holds the migration's lease; when it dies the lease runs out and another
 * replica takes over with a greater token.
 */
export class Leases {
  constructor(
    private readonly db: Kysely<Database>,
    readonly holder: string,
    readonly ttlMs: number,
  ) {}

  /**
   * Takes back, with new fencing tokens, every lease held under this
   * replica's identity: called once at start, when holding the identity
   * proves that the process which held them before is dead. Returns their names.
   */
  async reclaim(): Promise<string[]> {
    const r = await sql<{ name: string }>`
      update leases set token = token + 1, expires_at = now() + ${`${this.ttlMs} milliseconds`}::interval
       where holder = ${this.holder}
      returning name`.execute(this.db);
    return r.rows.map((x) => x.name);
  }

  /** Takes the lease if it is free, expired, or ours already (then renews it). */
  async acquire(name: string, ttlMs = this.ttlMs): Promise<Lease | undefined> {
    const ttl = `${ttlMs} milliseconds`;
    const r = await sql<{ token: string }>`
      insert into leases (name, holder, token, expires_at)
      values (${name}, ${this.holder}, 1, now() + ${ttl}::interval)
      on conflict (name) do update
        set holder = excluded.holder,
            token = case when leases.holder = excluded.holder then leases.token else leases.token + 1 end,
            expires_at = excluded.expires_at
        where leases.expires_at < now() or leases.holder = excluded.holder
      returning token`.execute(this.db);
    const row = r.rows[0];
    return row ? { name, holder: this.holder, token: row.token } : undefined;
  }

  /** Extends a lease we hold; false when it was lost (expired and taken, or released). */
  async renew(lease: Lease, ttlMs = this.ttlMs): Promise<boolean> {
    const r = await sql`
      update leases set expires_at = now() + ${`${ttlMs} milliseconds`}::interval
       where name = ${lease.name} and holder = ${lease.holder} and token = ${lease.token} and expires_at > now()`.execute(
      this.db,
    );
    return Number(r.numAffectedRows ?? 0) === 1;
  }

  async release(lease: Lease): Promise<void> {
    await sql`update leases set expires_at = now() - interval '1 second'
               where name = ${lease.name} and holder = ${lease.holder} and token = ${lease.token}`.execute(this.db);
  }
}

/** A SQL condition true only while the lease is still held: every write of the driver carries it. */
export function leaseHeld(lease: Lease) {
  return sql<boolean>`exists (select 1 from leases where name = ${lease.name} and holder = ${lease.holder} and token = ${lease.token} and expires_at > now())`;
}
