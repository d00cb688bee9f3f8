import { EventEmitter } from "node:events";
import type { PeerCertificate } from "node:tls";
import type * as grpc from "@grpc/grpc-js";
import { adsService, TYPE, UNDECODABLE } from "./envoy-protos.js";
import type { CacheChange, CachedResource, ResourceCache } from "./cache.js";

/** The node as a proxy introduces itself (the parts we use). */
export interface XdsNode {
  id: string;
  cluster: string;
  metadata?: unknown;
}

export type AckOutcome = "acked" | "nacked" | "pending";

/** Per stream, per type: what the proxy last accepted and last rejected. */
export interface TypeAckState {
  ackedVersion: number | undefined;
  nackedVersion: number | undefined;
  nackMessage: string | undefined;
}

export interface StreamView {
  id: number;
  node: XdsNode;
  /** Who the stream authenticated as (from its client certificate), when the admission hook names it. */
  identity: string | undefined;
  kind: "sotw" | "delta";
  connectedAt: Date;
  lastSeen: Date;
  acks: Map<string, TypeAckState>;
}

interface PendingDelta {
  typeUrl: string;
  versions: Map<string, number>;
}

interface StreamState extends StreamView {
  group: string | undefined;
  visible: ((typeUrl: string, name: string) => boolean) | undefined;
  /** Requests in the current one-second window, for the flood bound. */
  window: { start: number; count: number };
  /** Subscribed names per type; "*" means every resource of the type (wildcard). */
  subs: Map<string, Set<string> | "*">;
  /** SotW: last nonce and the version it carried, per type. */
  lastNonce: Map<string, { nonce: string; version: number }>;
  /** Delta: what the client holds, per type and name. */
  held: Map<string, Map<string, number>>;
  /** Delta: responses awaiting ACK, by nonce. */
  pendingDelta: Map<string, PendingDelta>;
  /** Delta: per resource, the version acknowledged and the one rejected. */
  deltaAcked: Map<string, Map<string, number>>;
  deltaNacked: Map<string, Map<string, { version: number; message: string }>>;
  dirty: Set<string>;
  flushScheduled: boolean;
  write(msg: unknown): void;
}

/** Types sent in this order when several changed together: clusters before what uses them (make before break). */
const ORDER: string[] = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route];
const rank = (t: string) => (ORDER.includes(t) ? ORDER.indexOf(t) : ORDER.length);

/** LDS and CDS are wildcard when the first request names nothing; other types are always by name. */
const WILDCARD_CAPABLE = new Set<string>([TYPE.listener, TYPE.cluster]);

/** What the transport says of the peer of a stream. */
export interface XdsPeer {
  address: string;
  /** The client certificate, when the stream is over mutual TLS. */
  certificate: PeerCertificate | undefined;
}

/** An admission hook's answer for a new stream. */
export type Admission =
  | { refuse: string; /** the gRPC status; PERMISSION_DENIED unless told */ code?: number }
  | {
      /** The authenticated identity the stream's ACK state is kept under. */
      identity?: string;
      /** Which resources the stream may receive; everything when undefined. */
      visible?: (typeUrl: string, name: string) => boolean;
    };

/** Bounds on what one stream may ask, so a flooding client cannot starve the others. */
export interface AdsLimits {
  /** Resource names a stream may subscribe to, per type. */
  maxNamesPerType: number;
  /** Requests a stream may send per second; beyond that the stream is ended. */
  maxRequestsPerSecond: number;
}

export const DEFAULT_ADS_LIMITS: AdsLimits = { maxNamesPerType: 10_000, maxRequestsPerSecond: 200 };

export interface AdsServerOptions {
  /** Which cache view a node sees; shared view when undefined. */
  groupOf?: (node: XdsNode) => string | undefined;
  /**
   * Called with the first request of a stream (go-control-plane's OnStreamRequest): may refuse the stream
   * (it ends with PERMISSION_DENIED and the reason), name its identity and scope what it sees.
   */
  admit?: (node: XdsNode, peer: XdsPeer) => Admission;
  /** The resource types served; a request for another ends the stream with INVALID_ARGUMENT. Default: the types in TYPE but tcpProxy. */
  types?: readonly string[];
  limits?: Partial<AdsLimits>;
}

/** gRPC status codes used here (grpc-js's enum is not imported at run time by this module). */
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const RESOURCE_EXHAUSTED = 8;

class StreamRefused extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * envoy.service.discovery.v3.AggregatedDiscoveryService, state of the world
 * and incremental, over a ResourceCache. It tracks, per stream and type, what
 * each proxy ACKed and NACKed, and emits "ack", "nack", "connect" and
 * "disconnect" so that callers can wait for a change to be applied.
 */
export class AdsServer extends EventEmitter {
  private nextId = 1;
  private nonceCounter = 0;
  private readonly streams = new Map<number, StreamState>();
  private readonly unsubscribe: () => void;
  private readonly types: Set<string>;
  private readonly limits: AdsLimits;

  constructor(
    private readonly cache: ResourceCache,
    private readonly opts: AdsServerOptions = {},
  ) {
    super();
    this.setMaxListeners(0);
    this.types = new Set(opts.types ?? [TYPE.listener, TYPE.cluster, TYPE.endpoint, TYPE.route]);
    this.limits = { ...DEFAULT_ADS_LIMITS, ...opts.limits };
    this.unsubscribe = cache.onChange((c) => this.onCacheChange(c));
  }

  close(): void {
    this.unsubscribe();
  }

  addTo(server: grpc.Server): void {
    server.addService(adsService(), {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<any, any>) => this.serve(call, "sotw"),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<any, any>) => this.serve(call, "delta"),
    });
  }

  connected(): StreamView[] {
    return [...this.streams.values()];
  }

  /**
   * Whether a stream has applied a resource at (at least) the given cache
   * version: acked, nacked (rejected), or still pending.
   */
  outcome(streamId: number, typeUrl: string, name: string, version: number): AckOutcome {
    const s = this.streams.get(streamId);
    if (!s) return "pending";
    if (s.kind === "delta") {
      const nack = s.deltaNacked.get(typeUrl)?.get(name);
      if (nack && nack.version >= version) return "nacked";
      const acked = s.deltaAcked.get(typeUrl)?.get(name);
      return acked !== undefined && acked >= version ? "acked" : "pending";
    }
    const st = s.acks.get(typeUrl);
    if (st?.nackedVersion !== undefined && st.nackedVersion >= version && (st.ackedVersion ?? -1) < st.nackedVersion)
      return "nacked";
    return st?.ackedVersion !== undefined && st.ackedVersion >= version ? "acked" : "pending";
  }

  /** Whether a stream receives a resource at all (subscribed by name or by wildcard). */
  subscribes(streamId: number, typeUrl: string, name: string): boolean {
    const s = this.streams.get(streamId);
    const sub = s?.subs.get(typeUrl);
    if (!s || (s.visible && !s.visible(typeUrl, name))) return false;
    return sub === "*" || (sub !== undefined && sub.has(name));
  }

  private nonce(): string {
    return (++this.nonceCounter).toString(36);
  }

  private serve(call: grpc.ServerDuplexStream<any, any>, kind: "sotw" | "delta"): void {
    const id = this.nextId++;
    let state: StreamState | undefined;
    const end = () => {
      if (!state || !this.streams.has(id)) return;
      this.streams.delete(id);
      this.emit("disconnect", state);
    };
    let refused = false;
    call.on("data", (req: any) => {
      if (refused) return;
      try {
        if (req?.[UNDECODABLE]) throw new StreamRefused(INVALID_ARGUMENT, req[UNDECODABLE] as string);
        if (!state) {
          const node: XdsNode = {
            id: req.node?.id ?? "",
            cluster: req.node?.cluster ?? "",
            metadata: req.node?.metadata,
          };
          if (!node.id) throw new StreamRefused(INVALID_ARGUMENT, "the first request on a stream must carry node.id");
          const auth = call.getAuthContext();
          const admission =
            this.opts.admit?.(node, { address: call.getPeer(), certificate: auth?.sslPeerCertificate }) ?? {};
          if ("refuse" in admission) throw new StreamRefused(admission.code ?? PERMISSION_DENIED, admission.refuse);
          state = {
            id,
            node,
            identity: admission.identity,
            visible: admission.visible,
            window: { start: Date.now(), count: 0 },
            kind,
            connectedAt: new Date(),
            lastSeen: new Date(),
            acks: new Map(),
            group: this.opts.groupOf?.(node),
            subs: new Map(),
            lastNonce: new Map(),
            held: new Map(),
            pendingDelta: new Map(),
            deltaAcked: new Map(),
            deltaNacked: new Map(),
            dirty: new Set(),
            flushScheduled: false,
            write: (msg) => call.write(msg),
          };
          this.streams.set(id, state);
          this.emit("connect", state);
        }
        state.lastSeen = new Date();
        this.admitRequest(state, req);
        if (kind === "sotw") this.onSotwRequest(state, req);
        else this.onDeltaRequest(state, req);
      } catch (e) {
        // Emitting "error" on a grpc-js server stream ends it with that status; destroy() would drop the status.
        refused = true;
        end();
        const err =
          e instanceof StreamRefused
            ? Object.assign(new Error(e.message), { code: e.code, details: e.message })
            : (e as Error);
        call.emit("error", err);
      }
    });
    call.on("end", () => {
      end();
      call.end();
    });
    call.on("error", end);
    call.on("cancelled", end);
    call.on("close", end);
  }

  /** The bounds every request must keep: a served type, a bounded subscription, a bounded rate. */
  private admitRequest(s: StreamState, req: any): void {
    const now = Date.now();
    if (now - s.window.start >= 1000) s.window = { start: now, count: 0 };
    if (++s.window.count > this.limits.maxRequestsPerSecond) {
      throw new StreamRefused(
        RESOURCE_EXHAUSTED,
        `more than ${this.limits.maxRequestsPerSecond} requests in a second on one stream; reconnect and slow down`,
      );
    }
    const typeUrl: string = req.type_url ?? "";
    if (typeUrl && !this.types.has(typeUrl)) {
      throw new StreamRefused(
        INVALID_ARGUMENT,
        `type_url "${typeUrl.slice(0, 120)}" is not served here; served: ${[...this.types].join(", ")}`,
      );
    }
    const names =
      (req.resource_names?.length ?? 0) +
      (req.resource_names_subscribe?.length ?? 0) +
      Object.keys(req.initial_resource_versions ?? {}).length;
    const held = s.subs.get(typeUrl);
    if (
      names > this.limits.maxNamesPerType ||
      (held instanceof Set && held.size + (req.resource_names_subscribe?.length ?? 0) > this.limits.maxNamesPerType)
    ) {
      throw new StreamRefused(
        RESOURCE_EXHAUSTED,
        `a stream may subscribe to at most ${this.limits.maxNamesPerType} names of ${typeUrl}`,
      );
    }
  }

  /** The cache's view of a type as this stream may see it. */
  private viewFor(s: StreamState, typeUrl: string): Map<string, CachedResource> {
    const view = this.cache.view(typeUrl, s.group);
    if (!s.visible) return view;
    return new Map([...view].filter(([name]) => s.visible!(typeUrl, name)));
  }

  // ---- state of the world ----

  private onSotwRequest(s: StreamState, req: any): void {
    const typeUrl: string = req.type_url;
    if (!typeUrl) return;
    const names: string[] = req.resource_names ?? [];
    const nonce: string = req.response_nonce ?? "";
    const last = s.lastNonce.get(typeUrl);
    if (nonce) {
      // A request answering an older response is stale: the spec says to ignore it.
      if (!last || last.nonce !== nonce) return;
      const st = s.acks.get(typeUrl) ?? { ackedVersion: undefined, nackedVersion: undefined, nackMessage: undefined };
      if (req.error_detail) {
        st.nackedVersion = last.version;
        st.nackMessage = String(req.error_detail.message ?? "rejected");
        s.acks.set(typeUrl, st);
        this.emit("nack", s, typeUrl, last.version, st.nackMessage);
      } else {
        // The version is the one the answered nonce carried: a client's own version_info could claim any.
        st.ackedVersion = last.version;
        s.acks.set(typeUrl, st);
        this.emit("ack", s, typeUrl, st.ackedVersion);
      }
    }
    const prev = s.subs.get(typeUrl);
    const next: Set<string> | "*" =
      names.length === 0 || names.includes("*")
        ? WILDCARD_CAPABLE.has(typeUrl) && (prev === undefined || prev === "*")
          ? "*"
          : new Set()
        : new Set(names);
    const changed = prev === undefined || !sameSubs(prev, next);
    s.subs.set(typeUrl, next);
    // First request, or a changed subscription: answer with the current state.
    if (!nonce || changed) this.sendSotw(s, typeUrl);
  }

  private sendSotw(s: StreamState, typeUrl: string): void {
    const sub = s.subs.get(typeUrl);
    if (sub === undefined) return;
    const view = this.viewFor(s, typeUrl);
    const resources: CachedResource[] =
      sub === "*"
        ? [...view.values()]
        : [...sub].map((n) => view.get(n)).filter((r): r is CachedResource => Boolean(r));
    const version = this.cache.currentVersion();
    const nonce = this.nonce();
    s.lastNonce.set(typeUrl, { nonce, version });
    s.write({
      version_info: String(version),
      type_url: typeUrl,
      nonce,
      resources: resources.map((r) => ({ type_url: typeUrl, value: Buffer.from(r.value) })),
    });
  }

  // ---- incremental ----

  private onDeltaRequest(s: StreamState, req: any): void {
    const typeUrl: string = req.type_url;
    if (!typeUrl) return;
    const nonce: string = req.response_nonce ?? "";
    if (nonce) {
      const pending = s.pendingDelta.get(nonce);
      s.pendingDelta.delete(nonce);
      if (pending) {
        if (req.error_detail) {
          const nacked = s.deltaNacked.get(typeUrl) ?? new Map();
          for (const [name, v] of pending.versions)
            nacked.set(name, { version: v, message: String(req.error_detail.message ?? "rejected") });
          s.deltaNacked.set(typeUrl, nacked);
          const max = Math.max(0, ...pending.versions.values());
          s.acks.set(typeUrl, {
            ...(s.acks.get(typeUrl) ?? { ackedVersion: undefined }),
            nackedVersion: max,
            nackMessage: String(req.error_detail.message ?? "rejected"),
          });
          this.emit("nack", s, typeUrl, max, String(req.error_detail.message ?? "rejected"));
        } else {
          const acked = s.deltaAcked.get(typeUrl) ?? new Map();
          for (const [name, v] of pending.versions) acked.set(name, v);
          s.deltaAcked.set(typeUrl, acked);
          const max = Math.max(0, ...pending.versions.values());
          const prev = s.acks.get(typeUrl);
          s.acks.set(typeUrl, {
            ackedVersion: Math.max(max, prev?.ackedVersion ?? 0),
            nackedVersion: prev?.nackedVersion,
            nackMessage: prev?.nackMessage,
          });
          this.emit("ack", s, typeUrl, max);
        }
      }
    }
    const subscribe: string[] = req.resource_names_subscribe ?? [];
    const unsubscribe: string[] = req.resource_names_unsubscribe ?? [];
    const first = !s.subs.has(typeUrl);
    let sub = s.subs.get(typeUrl) ?? new Set<string>();
    if (first && subscribe.length === 0 && WILDCARD_CAPABLE.has(typeUrl)) sub = "*";
    if (subscribe.includes("*")) sub = "*";
    if (sub !== "*") {
      for (const n of subscribe) sub.add(n);
      for (const n of unsubscribe) sub.delete(n);
    }
    s.subs.set(typeUrl, sub);
    const held = s.held.get(typeUrl) ?? new Map<string, number>();
    if (first) {
      // Versions the client already holds from an earlier stream: do not send those again.
      const initial: Record<string, string> = req.initial_resource_versions ?? {};
      for (const [name, v] of Object.entries(initial)) held.set(name, Number(v));
    }
    for (const n of unsubscribe) held.delete(n);
    s.held.set(typeUrl, held);
    if (first || subscribe.length > 0) this.sendDelta(s, typeUrl);
  }

  private sendDelta(s: StreamState, typeUrl: string): void {
    const sub = s.subs.get(typeUrl);
    if (sub === undefined) return;
    const view = this.viewFor(s, typeUrl);
    const held = s.held.get(typeUrl)!;
    const wanted = sub === "*" ? [...view.keys()] : [...sub];
    const resources: Array<{ name: string; version: string; resource: { type_url: string; value: Buffer } }> = [];
    const versions = new Map<string, number>();
    for (const name of wanted) {
      const r = view.get(name);
      if (r && held.get(name) !== r.version) {
        resources.push({
          name,
          version: String(r.version),
          resource: { type_url: typeUrl, value: Buffer.from(r.value) },
        });
        versions.set(name, r.version);
        held.set(name, r.version);
      }
    }
    const removed: string[] = [];
    for (const name of [...held.keys()]) {
      if (!view.has(name) && (sub === "*" || sub.has(name))) {
        removed.push(name);
        held.delete(name);
      }
    }
    if (resources.length === 0 && removed.length === 0) return;
    const nonce = this.nonce();
    s.pendingDelta.set(nonce, { typeUrl, versions });
    s.write({
      system_version_info: String(this.cache.currentVersion()),
      type_url: typeUrl,
      nonce,
      resources,
      removed_resources: removed,
    });
  }

  // ---- pushing changes ----

  private onCacheChange(c: CacheChange): void {
    for (const s of this.streams.values()) {
      const sub = s.subs.get(c.typeUrl);
      if (sub === undefined) continue;
      if (sub !== "*" && !c.names.some((n) => sub.has(n))) continue;
      s.dirty.add(c.typeUrl);
      if (!s.flushScheduled) {
        s.flushScheduled = true;
        // Coalesce the changes of one tick, then send them in make-before-break order.
        setImmediate(() => this.flush(s));
      }
    }
  }

  private flush(s: StreamState): void {
    s.flushScheduled = false;
    if (!this.streams.has(s.id)) return;
    const types = [...s.dirty].sort((a, b) => rank(a) - rank(b));
    s.dirty.clear();
    for (const t of types) {
      if (s.kind === "sotw") this.sendSotw(s, t);
      else this.sendDelta(s, t);
    }
  }
}

function sameSubs(a: Set<string> | "*", b: Set<string> | "*"): boolean {
  if (a === "*" || b === "*") return a === b;
  return a.size === b.size && [...a].every((n) => b.has(n));
}
