import type { ClientTls } from "../security/client-tls.js";
import { EventEmitter } from "node:events";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { adsClientConstructor, TYPE } from "../../xds/index.js";
import { envoyTypes, TCP_PROXY_FILTER } from "../routing/resources.js";

/**
 * The local stand-in for an Envoy sidecar: an ADS client of the service that
 * ACKs and NACKs like Envoy, and a TCP proxy that forwards each new
 * connection to its listener's cluster's current endpoint. Connections
 * already open stay where they are, as with Envoy's tcp_proxy.
 */
export interface ProxyOptions {
  /** host:port of the xDS server. */
  xds: string;
  nodeId: string;
  cluster?: string;
  /** Where to listen for a listener, instead of the port it names (tests run several proxies on one machine). */
  listenPort?: (listener: string, declared: number) => number;
  /**
   * An egress policy, as a mesh may impose on a sidecar: endpoints it refuses
   * are NACKed with the reason, and the last good configuration is kept.
   */
  allowEndpoint?: (host: string, port: number) => boolean;
  /** Mutual TLS to the control plane: its CA and this proxy's certificate (which must name the node id's identity). */
  tls?: ClientTls;
  /**
   * The name the control plane's certificate is checked against, and sent as SNI, when the address is an IP: SNI
   * may not carry an IP (RFC 6066), and Node warns of one.
   */
  serverName?: string;
}

interface ListenerState {
  name: string;
  cluster: string;
  declaredPort: number;
  server: net.Server;
  port: number;
}

interface Endpoint {
  host: string;
  port: number;
}

/** The longest a disconnected proxy waits between attempts to reach a control plane. */
const MAX_RETRY_MS = 100;

const Listener = envoyTypes.lookupType("envoy.config.listener.v3.Listener");
const Cluster = envoyTypes.lookupType("envoy.config.cluster.v3.Cluster");
const TcpProxy = envoyTypes.lookupType("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy");

export class XdsTcpProxy extends EventEmitter {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<any, any> | undefined;
  private readonly xdsListeners = new Map<string, ListenerState>();
  private readonly clusters = new Map<string, Endpoint>();
  /** Last accepted version per type, sent back with every request as Envoy does. */
  private readonly accepted = new Map<string, string>();
  private stopped = false;
  private retryMs = 100;
  readonly stats = { acks: 0, nacks: 0, connections: 0 };

  constructor(private readonly opts: ProxyOptions) {
    super();
  }

  async start(): Promise<void> {
    this.connect();
    this.open();
  }

  /**
   * The control-plane replicas to try, in turn: `--xds a:1,b:2` (each may be
   * a DNS name, re-resolved at every attempt). When a stream fails, the next
   * one is tried, so a proxy whose replica died moves to a live one.
   */
  private get targets(): string[] {
    return this.opts.xds
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);
  }
  private targetIndex = 0;

  /** The xDS address this proxy talks to now. */
  get xdsTarget(): string {
    return this.targets[this.targetIndex % this.targets.length]!;
  }

  private connect(): void {
    this.client?.close();
    const Ctor = adsClientConstructor();
    const target = this.xdsTarget;
    // A control plane that restarts (or a replica that dies) is found again within a fraction of a second, not after
    // grpc's default backoff (up to two minutes): writes may be stopped until this proxy learns the new route.
    // host:port goes through grpc's DNS resolver (an IP literal resolves to itself); a full target (dns:, ipv4:, unix:) as given.
    const address = /^(dns|ipv4|ipv6|unix|unix-abstract|xds):/.test(target) ? target : `dns:///${target}`;
    const tls = this.opts.tls;
    const credentials = tls ? grpc.credentials.createSsl(tls.ca, tls.key, tls.cert) : grpc.credentials.createInsecure();
    this.client = new Ctor(address, credentials, {
      ...(tls && this.opts.serverName ? { "grpc.ssl_target_name_override": this.opts.serverName } : {}),
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.min_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": MAX_RETRY_MS,
    });
  }

  /** The port the proxy listens on for a database's listener, once it has it. */
  portOf(listener: string): number | undefined {
    return this.xdsListeners.get(listener)?.port;
  }

  /** Resolves with the port once the proxy listens for the listener (it gets it over xDS). */
  waitForListener(listener: string, timeoutMs = 30_000): Promise<number> {
    const now = this.portOf(listener);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("listening", on);
        reject(new Error(`no listener ${listener} from the xDS server within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (name: string, port: number) => {
        if (name !== listener) return;
        clearTimeout(timer);
        this.off("listening", on);
        resolve(port);
      };
      this.on("listening", on);
    });
  }

  endpointOf(cluster: string): Endpoint | undefined {
    return this.clusters.get(cluster);
  }

  private open(): void {
    if (this.stopped || !this.client) return;
    const call = (this.client as any).StreamAggregatedResources() as grpc.ClientDuplexStream<any, any>;
    this.call = call;
    const node = {
      id: this.opts.nodeId,
      cluster: this.opts.cluster ?? "pgshift-proxy",
      user_agent_name: "pgshift-xds-tcp-proxy",
    };
    // CDS before LDS, wildcard both: everything the server has for us.
    for (const type_url of [TYPE.cluster, TYPE.listener]) {
      call.write({ node, type_url, resource_names: [], version_info: this.accepted.get(type_url) ?? "" });
    }
    call.on("data", (res: any) => {
      this.retryMs = 100;
      this.onResponse(res);
    });
    const again = () => {
      if (this.call !== call) return;
      this.call = undefined;
      if (this.stopped) return;
      if (this.targets.length > 1) {
        // This replica is gone or failing: the next one may answer.
        this.targetIndex++;
        this.connect();
      }
      // A reconnecting proxy gets the current state from the server; keep serving what we have meanwhile.
      setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
    };
    call.on("error", again);
    call.on("end", again);
  }

  private onResponse(res: any): void {
    const typeUrl: string = res.type_url;
    try {
      if (typeUrl === TYPE.cluster) this.applyClusters(res.resources ?? []);
      else if (typeUrl === TYPE.listener) this.applyListeners(res.resources ?? []);
      else throw new Error(`unexpected type ${typeUrl}`);
      this.accepted.set(typeUrl, res.version_info);
      this.call?.write({
        type_url: typeUrl,
        version_info: res.version_info,
        response_nonce: res.nonce,
        resource_names: [],
      });
      this.stats.acks++;
      this.emit("ack", typeUrl, res.version_info);
    } catch (e) {
      // NACK: keep the last good configuration, tell the server why.
      this.call?.write({
        type_url: typeUrl,
        version_info: this.accepted.get(typeUrl) ?? "",
        response_nonce: res.nonce,
        resource_names: [],
        error_detail: { code: 3, message: (e as Error).message },
      });
      this.stats.nacks++;
      this.emit("nack", typeUrl, res.version_info, (e as Error).message);
    }
  }

  private applyClusters(resources: Array<{ value: Buffer }>): void {
    const next = new Map<string, Endpoint>();
    for (const r of resources) {
      const c = Cluster.toObject(Cluster.decode(r.value), { enums: String, longs: Number, defaults: true }) as any;
      const sa = c.load_assignment?.endpoints?.[0]?.lb_endpoints?.[0]?.endpoint?.address?.socket_address;
      if (!c.name) throw new Error("cluster without a name");
      if (!sa?.address || !sa.port_value) throw new Error(`cluster ${c.name} has no endpoint in load_assignment`);
      if (!["STATIC", "LOGICAL_DNS", "STRICT_DNS"].includes(c.type))
        throw new Error(`cluster ${c.name}: type ${c.type} is not supported by this proxy`);
      if (this.opts.allowEndpoint && !this.opts.allowEndpoint(sa.address, sa.port_value)) {
        throw new Error(
          `cluster ${c.name}: endpoint ${sa.address}:${sa.port_value} is not allowed by this sidecar's egress policy`,
        );
      }
      next.set(c.name, { host: sa.address, port: sa.port_value });
    }
    // State of the world: what is not in the response is gone.
    this.clusters.clear();
    for (const [k, v] of next) this.clusters.set(k, v);
  }

  private applyListeners(resources: Array<{ value: Buffer }>): void {
    const parsed = resources.map((r) => {
      const l = Listener.toObject(Listener.decode(r.value), { longs: Number, defaults: true }) as any;
      const filter = l.filter_chains?.[0]?.filters?.find((f: any) => f.name === TCP_PROXY_FILTER);
      if (!filter?.typed_config?.value) throw new Error(`listener ${l.name} has no ${TCP_PROXY_FILTER} filter`);
      const tcp = TcpProxy.toObject(TcpProxy.decode(filter.typed_config.value)) as any;
      if (!tcp.cluster) throw new Error(`listener ${l.name}: tcp_proxy names no cluster`);
      const port = l.address?.socket_address?.port_value;
      if (!port) throw new Error(`listener ${l.name} has no port`);
      return { name: l.name as string, cluster: tcp.cluster as string, port: port as number };
    });
    const names = new Set(parsed.map((p) => p.name));
    for (const [name, st] of this.xdsListeners) {
      if (!names.has(name)) {
        st.server.close();
        this.xdsListeners.delete(name);
      }
    }
    for (const p of parsed) {
      const existing = this.xdsListeners.get(p.name);
      if (existing && existing.declaredPort === p.port) {
        existing.cluster = p.cluster;
        continue;
      }
      existing?.server.close();
      const st: ListenerState = {
        name: p.name,
        cluster: p.cluster,
        declaredPort: p.port,
        server: net.createServer((s) => this.forward(st, s)),
        port: 0,
      };
      const port = this.opts.listenPort ? this.opts.listenPort(p.name, p.port) : p.port;
      st.server.on("error", (e) => this.emit("error", e));
      st.server.listen(port, "127.0.0.1", () => {
        st.port = (st.server.address() as net.AddressInfo).port;
        this.emit("listening", p.name, st.port);
      });
      this.xdsListeners.set(p.name, st);
    }
  }

  private forward(l: ListenerState, down: net.Socket): void {
    const ep = this.clusters.get(l.cluster);
    if (!ep) {
      down.destroy();
      return;
    }
    this.stats.connections++;
    const up = net.connect(ep.port, ep.host);
    down.pipe(up).pipe(down);
    const close = () => {
      down.destroy();
      up.destroy();
    };
    up.on("error", close);
    down.on("error", close);
    up.on("close", close);
    down.on("close", close);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.call?.cancel();
    this.client?.close();
    await Promise.all([...this.xdsListeners.values()].map((l) => new Promise<void>((r) => l.server.close(() => r()))));
    this.xdsListeners.clear();
  }
}
