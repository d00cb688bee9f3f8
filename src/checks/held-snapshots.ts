import type { Sql, SqlPort } from "../providers/sql.js";

/** One session per side and database, each in a repeatable-read transaction whose snapshot was taken at hold(). */
export interface Held {
  /** The held session of a side's database, or undefined when that one was not held. */
  sql(side: "source" | "target", database: string): Sql | undefined;
  /** Ends every held transaction and closes its session. */
  release(): void;
}

/** Longest a snapshot is held: an open transaction keeps old rows from being vacuumed, so a forgotten one must end. */
export const MAX_HOLD_MS = 15 * 60_000;

/** Opens a session, starts a read-only repeatable-read transaction and takes its snapshot; resolves once taken. */
function holdSession(port: SqlPort): Promise<{ sql: Sql; release: () => void }> {
  return new Promise((resolve, reject) => {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    let taken = false;
    port
      .session(async (c) => {
        await c.query("begin isolation level repeatable read read only");
        // The snapshot is taken at the first statement of the transaction.
        await c.query("select 1");
        taken = true;
        resolve({ sql: c, release });
        await done;
      })
      .catch((e: unknown) => (taken ? undefined : reject(e)));
  });
}

/**
 * Snapshots of both sides taken at one point (the target just promoted and not yet routed to; the source drained
 * at a rollback), held open in this process until a comparison reads them, so that it compares the two sides as
 * they were then, however much the application writes meanwhile. Lost with the process: a comparison then says so.
 */
export class HeldSnapshots {
  private readonly held = new Map<string, Held>();

  async hold(key: string, sides: Array<{ side: "source" | "target"; database: string; port: SqlPort }>): Promise<void> {
    this.take(key)?.release();
    const sessions = await Promise.allSettled(sides.map((s) => holdSession(s.port)));
    const byName = new Map<string, { sql: Sql; release: () => void }>();
    sessions.forEach((r, i) => r.status === "fulfilled" && byName.set(`${sides[i]!.side}/${sides[i]!.database}`, r.value));
    const release = () => {
      clearTimeout(timer);
      for (const s of byName.values()) s.release();
      if (this.held.get(key) === held) this.held.delete(key);
    };
    const held: Held = { sql: (side, db) => byName.get(`${side}/${db}`)?.sql, release };
    const timer = setTimeout(release, MAX_HOLD_MS);
    timer.unref();
    const failed = sessions.find((r) => r.status === "rejected");
    if (failed) {
      release();
      throw (failed as PromiseRejectedResult).reason;
    }
    this.held.set(key, held);
  }

  /** The snapshots held under key, now the caller's to release; undefined when none are (never taken, or lost). */
  take(key: string): Held | undefined {
    const h = this.held.get(key);
    this.held.delete(key);
    return h;
  }
}
