import type { Sql, SqlPort } from "../providers/sql.js";

/** One session per side and database, each in a repeatable-read transaction whose snapshot was taken at hold(). */
export interface Held {
  /** The held session of a side's database, or undefined when that one was not held. */
  sql(side: "source" | "target", database: string): Sql | undefined;
  /** Ends every held transaction and closes its session. */
  release(): void;
}

export type Side = { side: "source" | "target"; database: string; port: SqlPort };

/** Longest a session is kept: an open transaction keeps old rows from being vacuumed, so a forgotten one must end. */
export const MAX_HOLD_MS = 15 * 60_000;

interface Session {
  sql: Sql;
  release(): void;
}

/** Opens a session and keeps it open until released; resolves once it is connected. */
function openSession(port: SqlPort): Promise<Session> {
  return new Promise((resolve, reject) => {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    let opened = false;
    port
      .session(async (c) => {
        opened = true;
        resolve({ sql: c, release });
        await done;
      })
      .catch((e: unknown) => (opened ? undefined : reject(e)));
  });
}

/** A set of sessions, one per side and database, released together (and by a timer, should nobody release them). */
class Sessions implements Held {
  private readonly timer: NodeJS.Timeout;
  /** Called once they are released (by their owner, or by the timer), so that the registry forgets them. */
  whenReleased: () => void = () => {};

  private constructor(private readonly byName: Map<string, Session>) {
    this.timer = setTimeout(() => this.release(), MAX_HOLD_MS);
    this.timer.unref();
  }

  static async open(sides: Side[]): Promise<Sessions> {
    const opened = await Promise.allSettled(sides.map((s) => openSession(s.port)));
    const byName = new Map<string, Session>();
    opened.forEach(
      (r, i) => r.status === "fulfilled" && byName.set(`${sides[i]!.side}/${sides[i]!.database}`, r.value),
    );
    const sessions = new Sessions(byName);
    const failed = opened.find((r) => r.status === "rejected");
    if (failed) {
      sessions.release();
      throw (failed as PromiseRejectedResult).reason;
    }
    return sessions;
  }

  covers(sides: Side[]): boolean {
    return sides.every((s) => this.byName.has(`${s.side}/${s.database}`));
  }

  sql(side: "source" | "target", database: string): Sql | undefined {
    return this.byName.get(`${side}/${database}`)?.sql;
  }

  /** Each session's snapshot taken now, in one round trip each, all at once. */
  async snapshot(): Promise<void> {
    await Promise.all(
      [...this.byName.values()].map((s) => s.sql.query("begin isolation level repeatable read read only; select 1")),
    );
  }

  release(): void {
    clearTimeout(this.timer);
    for (const s of this.byName.values()) s.release();
    this.whenReleased();
  }
}

/**
 * Snapshots of both sides taken at one point (the target just promoted and not yet routed to; the source drained
 * at a rollback), held open in this process until a comparison reads them, so that it compares the two sides as
 * they were then, however much the application writes meanwhile. The sessions can be opened beforehand (outside
 * the write-unavailability window), so that taking the snapshots costs one round trip. Lost with the process: a
 * comparison then says so.
 */
export class HeldSnapshots {
  private readonly opened = new Map<string, Sessions>();
  private readonly held = new Map<string, Sessions>();

  /** Opens the sessions a later hold() under key takes its snapshots on; idle until then. */
  async open(key: string, sides: Side[]): Promise<void> {
    this.opened.get(key)?.release();
    const s = await Sessions.open(sides);
    s.whenReleased = () => void (this.opened.get(key) === s && this.opened.delete(key));
    this.opened.set(key, s);
  }

  /** Takes a snapshot of each side now, on the sessions opened under key when they cover these sides, else on new ones. */
  async hold(key: string, sides: Side[]): Promise<void> {
    this.take(key)?.release();
    let s = this.opened.get(key);
    this.opened.delete(key);
    if (!s?.covers(sides)) {
      s?.release();
      s = await Sessions.open(sides);
    }
    const sessions = s;
    sessions.whenReleased = () => void (this.held.get(key) === sessions && this.held.delete(key));
    try {
      await sessions.snapshot();
    } catch (e) {
      sessions.release();
      throw e;
    }
    this.held.set(key, sessions);
  }

  /** The snapshots held under key, now the caller's to release; undefined when none are (never taken, or lost). */
  take(key: string): Held | undefined {
    const h = this.held.get(key);
    this.held.delete(key);
    return h;
  }
}
