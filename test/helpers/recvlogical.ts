import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

/**
 * PostgreSQL's own logical-decoding client, pg_recvlogical, as a downstream
 * consumer that knows nothing of pgshift: it reads a test_decoding slot
 * through the data access layer's listener, confirms every second, and, when
 * its connection drops, tries again every 5 s by itself.
 */
export class RecvLogical {
  private proc: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  stderr = "";

  constructor(
    private readonly opts: {
      port: number;
      user: string;
      password: string;
      database: string;
      slot: string;
      file: string;
    },
  ) {}

  start(): void {
    const { port, user, password, database, slot, file } = this.opts;
    const proc = spawn(
      "pg_recvlogical",
      [
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-U",
        user,
        "-d",
        database,
        "-S",
        slot,
        "--start",
        "-f",
        file,
        "-s",
        "1",
        "-F",
        "1",
        "-v",
      ],
      // The password through the environment, as for any libpq client.
      { env: { ...process.env, PGPASSWORD: password }, stdio: ["ignore", "ignore", "pipe"] },
    );
    proc.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.proc = proc;
    this.exited = new Promise((r) => proc.once("exit", () => r()));
  }

  /** SIGINT: pg_recvlogical flushes, confirms what it wrote and exits, as an operator stopping it would. */
  async stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill("SIGINT");
    const t = setTimeout(() => this.proc?.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(t);
    this.proc = undefined;
  }

  /** How many times it lost its connection and said it would try again. */
  reconnects(): number {
    return (this.stderr.match(/waiting for \d+ seconds to try again|disconnected; waiting/g) ?? []).length;
  }

  /** The ids of the rows inserted into `table`, in the order the stream delivered them. */
  insertedIds(table = "public.items"): number[] {
    if (!existsSync(this.opts.file)) return [];
    const prefix = `table ${table}: INSERT: id[bigint]:`;
    return readFileSync(this.opts.file, "utf8")
      .split("\n")
      .filter((l) => l.startsWith(prefix))
      .map((l) => Number(l.slice(prefix.length).split(" ")[0]));
  }
}
