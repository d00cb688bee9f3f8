import { randomBytes } from "node:crypto";
import pg from "pg";

export interface WriteLoadOptions {
  /** Where the application connects: the proxy, or a database directly. */
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** Target inserts per second (each its own transaction); 0 means as fast as it can. */
  ratePerSec: number;
  /** Pause after a failed attempt before trying again. */
  retryDelayMs?: number;
}

export interface WriteFailure {
  at: number;
  code: string;
  message: string;
}

/**
 * An application writing numbered rows, one committed transaction at a time.
 * It records every id the database acknowledged as committed, every failure,
 * and commit latencies: what a migration is judged by.
 */
export class WriteLoad {
  readonly committed: bigint[] = [];
  /** When each of `committed` was acknowledged (Date.now()). */
  readonly committedAt: number[] = [];
  readonly failures: WriteFailure[] = [];
  readonly latenciesMs: number[] = [];
  /** Longest stretch without a successful commit while the load ran, and when it was. */
  longestGapMs = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private client: pg.Client | undefined;
  private lastCommitAt = 0;

  constructor(private readonly opts: WriteLoadOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.lastCommitAt = performance.now();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.client?.end().catch(() => {});
    this.client = undefined;
  }

  private async connect(): Promise<pg.Client> {
    const c = new pg.Client({
      host: this.opts.host,
      port: this.opts.port,
      user: this.opts.user,
      password: this.opts.password,
      database: this.opts.database,
      connectionTimeoutMillis: 2_000,
      application_name: "pgshift-write-load",
    });
    c.on("error", () => {});
    await c.connect();
    return c;
  }

  private async run(): Promise<void> {
    const interval = this.opts.ratePerSec > 0 ? 1000 / this.opts.ratePerSec : 0;
    let next = performance.now();
    while (this.running) {
      try {
        this.client ??= await this.connect();
        const t0 = performance.now();
        const r = await this.client.query<{ id: string }>("insert into items (payload) values ($1) returning id", [
          randomBytes(8).toString("hex"),
        ]);
        const now = performance.now();
        this.latenciesMs.push(now - t0);
        // The insert ran in its own implicit transaction: its id is committed once we hold the answer.
        this.committed.push(BigInt(r.rows[0]!.id));
        this.committedAt.push(Date.now());
        this.longestGapMs = Math.max(this.longestGapMs, now - this.lastCommitAt);
        this.lastCommitAt = now;
      } catch (e) {
        const err = e as { code?: string; message?: string };
        this.failures.push({ at: Date.now(), code: err.code ?? "connection", message: err.message ?? String(e) });
        await this.client?.end().catch(() => {});
        this.client = undefined;
        await new Promise((res) => setTimeout(res, this.opts.retryDelayMs ?? 5));
      }
      if (interval > 0) {
        next += interval;
        const wait = next - performance.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        else next = performance.now();
      }
    }
  }
}
