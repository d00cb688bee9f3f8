import { EventEmitter } from "node:events";
import pg from "pg";

/** What the events trigger announces: "<migration id> <event seq>". */
const NOTIFICATION = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) (\d{1,20})$/;
const ALL = "all";
const RESYNC = "resync";
const ROUTES = "routes";
const CAMPAIGNS = "campaigns";
/** What a campaign's change announces: its id. */
const CAMPAIGN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * One LISTEN connection per service process, fanned out in-process: migration
 * events and route changes. Both are announced by triggers in the store, so
 * every replica hears every writer. A lost connection is re-established, and
 * listeners are told to re-read (a notification may have been missed meanwhile).
 */
export class EventBus {
  private readonly emitter = new EventEmitter();
  /** Notifications on our channel that our trigger did not send (ignored). */
  malformed = 0;
  private client: pg.Client | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly connection: pg.ClientConfig) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    const client = new pg.Client({ ...this.connection, application_name: "pgshift-listen" });
    client.on("notification", (msg) => {
      // What changed is read from the table: the payload is not needed.
      if (msg.channel === "pgshift_routes") return void this.emitter.emit(ROUTES);
      if (msg.channel === "pgshift_campaigns") {
        if (!CAMPAIGN.test(msg.payload ?? "")) return void this.malformed++;
        this.emitter.emit(`c:${msg.payload}`);
        return void this.emitter.emit(CAMPAIGNS);
      }
      // Any role that reaches the store's database can NOTIFY this channel: what does not look like our trigger's is counted and dropped.
      const m = NOTIFICATION.exec(msg.payload ?? "");
      if (!m) {
        this.malformed++;
        return;
      }
      // Keys of our own, so that no payload can name an event the emitter treats specially ("error").
      this.emitter.emit(`m:${m[1]}`, m[2]);
      this.emitter.emit(ALL, m[1], m[2]);
    });
    client.on("error", () => this.reconnect());
    client.on("end", () => this.reconnect());
    await client.connect();
    await client.query("listen pgshift_events; listen pgshift_routes; listen pgshift_campaigns");
    this.client = client;
  }

  private reconnect(): void {
    if (this.closed || this.retry) return;
    this.client = undefined;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.start().then(
        // Anything announced while we were away is found by re-reading.
        () => this.emitter.emit(RESYNC),
        () => this.reconnect(),
      );
    }, 500);
  }

  /** Calls fn whenever the migration gets a new event (or a re-read is due). Returns an unsubscribe. */
  subscribe(migrationId: string, fn: () => void): () => void {
    return this.on(`m:${migrationId}`, fn);
  }

  /** Calls fn on every migration's events with its id (and with none when everything is to be re-read). Returns an unsubscribe. */
  subscribeAll(fn: (migrationId?: string) => void): () => void {
    return this.on(ALL, fn);
  }

  /** Calls fn whenever any replica changes a route (or a re-read is due). Returns an unsubscribe. */
  subscribeRoutes(fn: () => void): () => void {
    return this.on(ROUTES, fn);
  }

  /** Calls fn whenever a campaign changes (or a re-read is due); every campaign when id is undefined. */
  subscribeCampaign(id: string | undefined, fn: () => void): () => void {
    return this.on(id ? `c:${id}` : CAMPAIGNS, fn);
  }

  private on(key: string, fn: (...args: string[]) => void): () => void {
    this.emitter.on(key, fn);
    this.emitter.on(RESYNC, fn);
    return () => {
      this.emitter.off(key, fn);
      this.emitter.off(RESYNC, fn);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.client;
    this.client = undefined;
    if (c) await c.end().catch(() => {});
  }
}
