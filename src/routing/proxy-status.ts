import { sql, type Kysely } from "kysely";
import { TYPE, type AdsServer, type StreamView } from "../../xds/index.js";
import type { Database } from "../store/schema.js";
import type { Logger } from "../telemetry/log.js";
import { clusterName, listenerName } from "./resources.js";
import type { RouteSync } from "./route-sync.js";
import { HEARTBEAT_MS } from "./proxy-liveness.js";

/**
 * Turns the ADS server's per-type ACKs into "proxy P applied route version V
 * of database D" and keeps that in the store, so that whichever replica runs
 * the ROUTING step sees every proxy, whichever replica it is connected to.
 */
export class ProxyStatusTracker {
  private timer: NodeJS.Timeout | undefined;
  private readonly offs: Array<() => void> = [];

  constructor(
    private readonly db: Kysely<Database>,
    private readonly ads: AdsServer,
    private readonly sync: RouteSync,
    private readonly replicaId: string,
    private readonly log: Logger,
    /** Called once an answer is in the store (ROUTING, waiting in this process, looks at once). */
    private readonly recorded: () => void = () => {},
  ) {}

  start(): void {
    const onResponse = (s: StreamView) =>
      void this.update(s)
        .then(this.recorded)
        .catch((e: unknown) => this.log.warn("proxy status update failed", { error: String(e) }));
    const onGone = (s: StreamView) => void this.disconnected(s).catch(() => {});
    this.ads.on("ack", onResponse);
    this.ads.on("nack", onResponse);
    this.ads.on("disconnect", onGone);
    this.offs.push(
      () => this.ads.off("ack", onResponse),
      () => this.ads.off("nack", onResponse),
      () => this.ads.off("disconnect", onGone),
    );
    this.timer = setInterval(() => void this.heartbeat().catch(() => {}), HEARTBEAT_MS);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const off of this.offs) off();
    // Our streams end with us: say so rather than let them look alive until they go stale.
    await this.db
      .updateTable("proxy_status")
      .set({ connected: false })
      .where("replica_id", "=", this.replicaId)
      .execute()
      .catch(() => {});
  }

  private async update(s: StreamView): Promise<void> {
    for (const [dbName, pub] of this.sync.published) {
      const wantsCluster = this.ads.subscribes(s.id, TYPE.cluster, clusterName(dbName));
      const wantsListener = this.ads.subscribes(s.id, TYPE.listener, listenerName(dbName));
      // A proxy serves the database if it takes either of its resources.
      if (!wantsCluster && !wantsListener) continue;
      const c = wantsCluster ? this.ads.outcome(s.id, TYPE.cluster, clusterName(dbName), pub.clusterVersion) : "acked";
      const l = wantsListener
        ? this.ads.outcome(s.id, TYPE.listener, listenerName(dbName), pub.listenerVersion)
        : "acked";
      const nacked = c === "nacked" || l === "nacked";
      const acked = c === "acked" && l === "acked";
      const message = nacked
        ? (s.acks.get(c === "nacked" ? TYPE.cluster : TYPE.listener)?.nackMessage ?? "rejected")
        : null;
      const v = pub.route.version;
      await sql`
        insert into proxy_status (identity, node_id, database_name, replica_id, connected, acked_version, nacked_version, nack_message, last_seen)
        values (${s.identity ?? ""}, ${s.node.id}, ${dbName}, ${this.replicaId}, true, ${acked ? v : null}, ${nacked ? v : null}, ${message}, now())
        on conflict (identity, node_id, database_name) do update set
          replica_id = excluded.replica_id, connected = true, last_seen = now(),
          acked_version = greatest(proxy_status.acked_version, excluded.acked_version),
          nacked_version = case when excluded.nacked_version is not null then excluded.nacked_version else proxy_status.nacked_version end,
          nack_message = case when excluded.nacked_version is not null then excluded.nack_message else proxy_status.nack_message end`.execute(
        this.db,
      );
    }
  }

  private async disconnected(s: StreamView): Promise<void> {
    // Another stream of the same node may still be up on this replica.
    if (this.ads.connected().some((o) => o.node.id === s.node.id && o.identity === s.identity)) return;
    await this.db
      .updateTable("proxy_status")
      .set({ connected: false })
      .where("identity", "=", s.identity ?? "")
      .where("node_id", "=", s.node.id)
      .where("replica_id", "=", this.replicaId)
      .execute();
  }

  private async heartbeat(): Promise<void> {
    const streams = this.ads.connected();
    if (streams.length === 0) return;
    const identities = streams.map((s) => s.identity ?? "");
    const nodes = streams.map((s) => s.node.id);
    await this.db
      .updateTable("proxy_status")
      .set({ last_seen: new Date(), connected: true })
      .where("replica_id", "=", this.replicaId)
      .where(sql<boolean>`(identity, node_id) in (select * from unnest(${identities}::text[], ${nodes}::text[]))`)
      .execute();
  }
}
