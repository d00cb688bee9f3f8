import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from "pg-logical-replication";
import type { ClientTls } from "../../src/security/client-tls.js";
import { CdcService, SlotAction, type SlotDirective } from "../../src/gen/migration/v1/migration_pb.js";
import { lsnAtLeast, lsnFromBigInt, lsnToBigInt } from "../../src/domain/lsn.js";

export interface ConsumerOptions {
  /** The pgshift API, e.g. "https://127.0.0.1:50051". */
  api: string;
  /** Mutual TLS to the API, when it is not run --insecure. */
  tls?: ClientTls;
  /** The logical database the data access layer routes, e.g. "billing-db". */
  databaseName: string;
  slot: string;
  publication: string;
  /** A role with REPLICATION, and the PostgreSQL database the slot is in. */
  user: string;
  password: string;
  database: string;
  /**
   * host:port of the data access layer's listener for the database. Given,
   * the consumer ignores the API and behaves as one that knows nothing of
   * pgshift: it reads through the proxy, reconnects when dropped, and starts
   * again from its last confirmed position.
   */
  via?: string;
}

/** One committed row change as the stream delivered it. */
export interface Change {
  table: string;
  op: "insert" | "update" | "delete";
  row: Record<string, unknown>;
  commitLsn: string;
  /** host:port of the instance it was read from. */
  from: string;
}

/**
 * A logical-decoding consumer (pgoutput) that follows pgshift's directives:
 * it reads where it is told, drains and pauses when told, and resumes
 * against the endpoint it is given (or, with `via`, reads through the proxy
 * and knows nothing of pgshift). It keeps changes only once their
 * transaction committed, and confirms positions only at commits and idle
 * keepalives: what a careful downstream system does. The demo and the tests
 * use it to prove that a migration loses and duplicates nothing.
 */
export class CdcConsumer {
  readonly changes: Change[] = [];
  /** Directives as received, for the record. */
  readonly directives: SlotDirective[] = [];
  private readonly abort = new AbortController();
  private watching: Promise<void> | undefined;
  private stream: { service: LogicalReplicationService; endpoint: string; done: Promise<void> } | undefined;
  /** The last position received (data or keepalive), and the last confirmed. */
  private lastLsn = "0/0";
  private confirmed = "0/0";
  private pending: Change[] | undefined;
  private draining: Promise<void> = Promise.resolve();
  /** Bumped by every directive: a drain still under way when the next one arrives is moot (the service saw it through or moved on). */
  private generation = 0;

  constructor(private readonly opts: ConsumerOptions) {}

  start(): void {
    if (this.opts.via) {
      if (!this.stream) void this.openStream(this.opts.via);
      return;
    }
    this.watching ??= this.watch();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.watching?.catch(() => {});
    await this.closeStream();
  }

  /** Where the consumer stands, for a test's diagnostics. */
  debugState(): { endpoint?: string; lastLsn: string; confirmed: string; pending: boolean; generation: number } {
    return {
      endpoint: this.stream?.endpoint,
      lastLsn: this.lastLsn,
      confirmed: this.confirmed,
      pending: this.pending !== undefined,
      generation: this.generation,
    };
  }

  private async watch(): Promise<void> {
    const client = createClient(
      CdcService,
      createGrpcTransport({ baseUrl: this.opts.api, nodeOptions: this.opts.tls ? { ...this.opts.tls } : undefined }),
    );
    while (!this.abort.signal.aborted) {
      try {
        const stream = client.watchSlotDirectives(
          {
            databaseName: this.opts.databaseName,
            slotName: this.opts.slot,
            consumerId: `pgshift-consumer:${process.pid}`,
          },
          { signal: this.abort.signal },
        );
        for await (const res of stream) {
          if (!res.directive) continue;
          this.directives.push(res.directive);
          // Directives apply in order: a pause finishes draining before a resume starts reading.
          const d = res.directive;
          const g = ++this.generation;
          this.draining = this.draining.then(() => this.apply(d, g)).catch(() => {});
        }
      } catch {
        if (this.abort.signal.aborted) return;
        // The service restarted or moved: ask again.
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private async apply(d: SlotDirective, generation: number): Promise<void> {
    const endpoint = d.endpoint ? `${d.endpoint.host}:${d.endpoint.port}` : undefined;
    if (d.action === SlotAction.PAUSE) {
      // Superseded, it leaves the stream to the next directive (the same pause again after a reconnect drains on).
      if (await this.drainTo(d.drainToLsn, generation)) await this.closeStream();
      return;
    }
    if (!endpoint) return;
    if (this.stream?.endpoint === endpoint) return;
    await this.closeStream();
    // Positions are the new side's from here on: its slot was placed for us, and we start where the service says,
    // even below our own last position (a directive with reanchor: the sides count positions apart).
    if (d.action === SlotAction.RESUME && d.resumeFromLsn) this.confirmed = this.lastLsn = d.resumeFromLsn;
    await this.openStream(endpoint);
  }

  /** Reads on until everything before `lsn` was received and confirms it; false when a newer directive superseded the drain. */
  private async drainTo(lsn: string, generation: number): Promise<boolean> {
    if (!this.stream || !lsn) return true;
    const deadline = Date.now() + 60_000;
    while (this.stream && Date.now() < deadline) {
      if (this.generation !== generation) return false;
      if (this.pending === undefined && lsnAtLeast(next(this.lastLsn), lsn)) {
        await this.confirm(this.stream.service, this.lastLsn);
        return true;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  private async openStream(endpoint: string): Promise<void> {
    const [host, port] = [
      endpoint.slice(0, endpoint.lastIndexOf(":")),
      Number(endpoint.slice(endpoint.lastIndexOf(":") + 1)),
    ];
    const service = new LogicalReplicationService(
      {
        host,
        port,
        user: this.opts.user,
        password: this.opts.password,
        database: this.opts.database,
        application_name: "pgshift-consumer",
        // A connection attempt that hangs (a server going away mid-handshake) must not hold the next directive up.
        connectionTimeoutMillis: 5_000,
      },
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    service.on("error", () => {});
    service.on("data", (lsn: string, msg: Pgoutput.Message) => this.onMessage(service, lsn, msg, endpoint));
    service.on("heartbeat", (lsn: string, _ts: number, reply: boolean) => {
      if (lsnAtLeast(lsn, this.lastLsn)) this.lastLsn = lsn;
      // Idle: nothing is half-read, so everything up to the server's position is downstream.
      if (this.pending === undefined) void this.confirm(service, this.lastLsn);
      else if (reply) void this.confirm(service, this.confirmed);
    });
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [this.opts.publication] });
    const stream = { service, endpoint, done: Promise.resolve() };
    this.stream = stream;
    // Until the connection is taken (a fenced source refuses it), try again; a new directive ends the loop.
    stream.done = (async () => {
      while (!this.abort.signal.aborted && this.stream === stream) {
        this.pending = undefined;
        // From what we confirmed: the server starts at the slot's position if that is later.
        await service.subscribe(plugin, this.opts.slot, this.confirmed).catch(() => {});
        if (this.stream !== stream) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
  }

  private async closeStream(): Promise<void> {
    const s = this.stream;
    this.stream = undefined;
    if (!s) return;
    // Bounded: a stream stuck in a connection attempt must not hold the next directive up.
    await Promise.race([s.service.stop().catch(() => {}), new Promise((r) => setTimeout(r, 2_000))]);
    await Promise.race([s.done, new Promise((r) => setTimeout(r, 2_000))]);
    // A transaction cut off mid-way is sent again from the confirmed position.
    this.pending = undefined;
  }

  private async confirm(service: LogicalReplicationService, lsn: string): Promise<void> {
    if (lsnAtLeast(lsn, this.confirmed)) this.confirmed = lsn;
    await service.acknowledge(this.confirmed);
  }

  private onMessage(service: LogicalReplicationService, lsn: string, msg: Pgoutput.Message, from: string): void {
    if (lsnAtLeast(lsn, this.lastLsn)) this.lastLsn = lsn;
    switch (msg.tag) {
      case "begin":
        this.pending = [];
        return;
      case "insert":
        this.pending?.push({ table: msg.relation.name, op: "insert", row: msg.new, commitLsn: "", from });
        return;
      case "update":
        this.pending?.push({ table: msg.relation.name, op: "update", row: msg.new, commitLsn: "", from });
        return;
      case "delete":
        this.pending?.push({
          table: msg.relation.name,
          op: "delete",
          row: msg.key ?? msg.old ?? {},
          commitLsn: "",
          from,
        });
        return;
      case "commit": {
        const end = msg.commitEndLsn ?? lsn;
        for (const c of this.pending ?? []) this.changes.push({ ...c, commitLsn: end });
        this.pending = undefined;
        if (lsnAtLeast(end, this.lastLsn)) this.lastLsn = end;
        void this.confirm(service, end);
        return;
      }
      default:
        return;
    }
  }
}

/** The position just after `lsn`: what a confirmation of `lsn` covers. */
function next(lsn: string): string {
  return lsnFromBigInt(lsnToBigInt(lsn) + 1n);
}
