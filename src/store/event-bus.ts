import { EventEmitter } from "node:events";
import pg from "pg";

/**
 * One LISTEN connection per service process, fanned out in-process. Events are
 * announced by a trigger in the store, so every replica hears every writer.
 * A lost connection is re-established, and listeners are told to re-read
 * (a notification may have been missed meanwhile).
 */
export class EventBus {
  private readonly emitter = new EventEmitter();
  private client: pg.Client | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly connection: pg.ClientConfig) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    const client = new pg.Client({ ...this.connection, application_name: "pgshift-listen" });
    client.on("notification", (msg) => {
      const [migrationId, seq] = (msg.payload ?? "").split(" ");
      if (migrationId) this.emitter.emit(migrationId, seq);
      this.emitter.emit("*", migrationId, seq);
    });
    client.on("error", () => this.reconnect());
    client.on("end", () => this.reconnect());
    await client.connect();
    await client.query("listen pgshift_events");
    this.client = client;
  }

  private reconnect(): void {
    if (this.closed || this.retry) return;
    this.client = undefined;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.start().then(
        // Anything announced while we were away is found by re-reading.
        () => this.emitter.emit("resync"),
        () => this.reconnect(),
      );
    }, 500);
  }

  /** Calls fn whenever the migration gets a new event (or a re-read is due). Returns an unsubscribe. */
  subscribe(migrationId: string, fn: () => void): () => void {
    this.emitter.on(migrationId, fn);
    this.emitter.on("resync", fn);
    return () => {
      this.emitter.off(migrationId, fn);
      this.emitter.off("resync", fn);
    };
  }

  /** Calls fn on every migration's events (and re-reads). Returns an unsubscribe. */
  subscribeAll(fn: () => void): () => void {
    return this.subscribe("*", fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => {});
  }
}
