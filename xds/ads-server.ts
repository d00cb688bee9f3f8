import { EventEmitter } from "node:events";
import type { PeerCertificate } from "node:tls";
import type * as grpc from "@grpc/grpc-js";
import { adsService, encodeDiscoveryResponse, TYPE, UNDECODABLE } from "./envoy-protos.js";
import type { CacheChange, CachedResource, ResourceCache } from "./cache.js";
import { DeltaProtocol } from "./delta.js";
import type {
  DeltaDiscoveryRequest,
  DeltaDiscoveryResponse,
  DiscoveryRequest,
  DiscoveryResponse,
  Undecodable,
} from "./discovery-messages.js";
import { SotwProtocol } from "./sotw.js";
import type {
  AckOutcome,
  Protocol,
  ProtocolContext,
  SharedResponse,
  Stream,
  StreamView,
  Subscription,
  XdsNode,
} from "./stream.js";

export type { AckOutcome, StreamView, TypeAckState, XdsNode } from "./stream.js";

/** Types sent in this order when several changed together: clusters before what uses them (make before break). */
const ORDER: string[] = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route];
const rank = (t: string) => (ORDER.includes(t) ? ORDER.indexOf(t) : ORDER.length);

/** A stream with the protocol variant that serves it. */
interface ServedStream extends Stream {
  protocol: Protocol<DiscoveryRequest> | Protocol<DeltaDiscoveryRequest>;
}

type AnyRequest = DiscoveryRequest | DeltaDiscoveryRequest | Undecodable;
type AdsCall = grpc.ServerDuplexStream<AnyRequest, DiscoveryResponse | DeltaDiscoveryResponse | Buffer>;

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
      /**
       * Which resources the stream may receive; everything when undefined. Streams given the same function are taken
       * to see the same resources and share their encoded state-of-the-world responses: give one per rule.
       */
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
 * envoy.service.discovery.v3.AggregatedDiscoveryService, state of the world (sotw.ts) and incremental (delta.ts),
 * over a ResourceCache. This class runs the streams both share (admission, bounds, pushing cache changes in
 * make-before-break order); the variants keep, per stream and type, what each proxy ACKed and NACKed. It emits
 * "ack", "nack", "connect" and "disconnect" so that callers can wait for a change to be applied.
 */
export class AdsServer extends EventEmitter {
  private nextId = 1;
  private nonceCounter = 0;
  private readonly streams = new Map<number, ServedStream>();
  private readonly unsubscribe: () => void;
  private readonly types: Set<string>;
  private readonly limits: AdsLimits;
  /** SotW responses encoded once per view and cache version (see ProtocolContext.sharedSotw). */
  private readonly shared = new Map<string, SharedResponse>();
  /** A number for each visibility rule an admission gave, to key shared responses by. */
  private readonly ruleIds = new WeakMap<object, number>();
  private rules = 0;
  private readonly context: ProtocolContext = {
    view: (s, typeUrl) => this.viewFor(s, typeUrl),
    currentVersion: () => this.cache.currentVersion(),
    nonce: () => (++this.nonceCounter).toString(36),
    sharedSotw: (s, typeUrl, sub, make) => this.sharedSotw(s, typeUrl, sub, make),
    acked: (s, typeUrl, version) => this.emit("ack", s, typeUrl, version),
    nacked: (s, typeUrl, version, message) => this.emit("nack", s, typeUrl, version, message),
  };

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
      StreamAggregatedResources: (call: AdsCall) => this.serve(call, "sotw"),
      DeltaAggregatedResources: (call: AdsCall) => this.serve(call, "delta"),
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
    return this.streams.get(streamId)?.protocol.outcome(typeUrl, name, version) ?? "pending";
  }

  /** Whether a stream receives a resource at all (subscribed by name or by wildcard). */
  subscribes(streamId: number, typeUrl: string, name: string): boolean {
    const s = this.streams.get(streamId);
    const sub = s?.subs.get(typeUrl);
    if (!s || (s.visible && !s.visible(typeUrl, name))) return false;
    return sub === "*" || (sub !== undefined && sub.has(name));
  }

  private serve(call: AdsCall, kind: "sotw" | "delta"): void {
    const id = this.nextId++;
    let state: ServedStream | undefined;
    const end = () => {
      if (!state || !this.streams.has(id)) return;
      this.streams.delete(id);
      this.emit("disconnect", state);
    };
    let refused = false;
    call.on("data", (req: AnyRequest) => {
      if (refused) return;
      try {
        if (UNDECODABLE in req) throw new StreamRefused(INVALID_ARGUMENT, req[UNDECODABLE]);
        state ??= this.open(id, kind, call, req);
        state.lastSeen = new Date();
        this.admitRequest(state, req);
        state.protocol.onRequest(req);
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

  /** A stream's first request: the node it names, admitted (or refused) by the hook, served by its variant. */
  private open(
    id: number,
    kind: "sotw" | "delta",
    call: AdsCall,
    req: DiscoveryRequest | DeltaDiscoveryRequest,
  ): ServedStream {
    const node: XdsNode = { id: req.node?.id ?? "", cluster: req.node?.cluster ?? "", metadata: req.node?.metadata };
    if (!node.id) throw new StreamRefused(INVALID_ARGUMENT, "the first request on a stream must carry node.id");
    const auth = call.getAuthContext();
    const admission = this.opts.admit?.(node, { address: call.getPeer(), certificate: auth?.sslPeerCertificate }) ?? {};
    if ("refuse" in admission) throw new StreamRefused(admission.code ?? PERMISSION_DENIED, admission.refuse);
    const stream: Stream = {
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
      dirty: new Set(),
      flushScheduled: false,
    };
    const write = (msg: DiscoveryResponse | DeltaDiscoveryResponse | Buffer) => call.write(msg);
    const served: ServedStream = Object.assign(stream, {
      protocol:
        kind === "sotw"
          ? new SotwProtocol(stream, this.context, write)
          : new DeltaProtocol(stream, this.context, write),
    });
    this.streams.set(id, served);
    this.emit("connect", served);
    return served;
  }

  /** The bounds every request must keep: a served type, a bounded subscription, a bounded rate. */
  private admitRequest(s: Stream, req: DiscoveryRequest & DeltaDiscoveryRequest): void {
    const now = Date.now();
    if (now - s.window.start >= 1000) s.window = { start: now, count: 0 };
    if (++s.window.count > this.limits.maxRequestsPerSecond) {
      throw new StreamRefused(
        RESOURCE_EXHAUSTED,
        `more than ${this.limits.maxRequestsPerSecond} requests in a second on one stream; reconnect and slow down`,
      );
    }
    const typeUrl = req.type_url ?? "";
    if (typeUrl && !this.types.has(typeUrl)) {
      throw new StreamRefused(
        INVALID_ARGUMENT,
        `type_url "${typeUrl.slice(0, 120)}" is not served here; served: ${[...this.types].join(", ")}`,
      );
    }
    const subscribing = req.resource_names_subscribe?.length ?? 0;
    const names =
      (req.resource_names?.length ?? 0) + subscribing + Object.keys(req.initial_resource_versions ?? {}).length;
    const held = s.subs.get(typeUrl);
    if (
      names > this.limits.maxNamesPerType ||
      (held instanceof Set && held.size + subscribing > this.limits.maxNamesPerType)
    ) {
      throw new StreamRefused(
        RESOURCE_EXHAUSTED,
        `a stream may subscribe to at most ${this.limits.maxNamesPerType} names of ${typeUrl}`,
      );
    }
  }

  private sharedSotw(
    s: Stream,
    typeUrl: string,
    sub: Subscription,
    make: (nonce: string) => object,
  ): SharedResponse | undefined {
    // Long explicit lists are rare (a proxy names its few clusters); keying on them would cost more than it saves.
    if (sub !== "*" && sub.size > 16) return undefined;
    let rule = 0;
    if (s.visible) {
      rule = this.ruleIds.get(s.visible) ?? this.ruleIds.set(s.visible, ++this.rules).get(s.visible)!;
    }
    const names = sub === "*" ? "*" : [...sub].sort().join("\u0000");
    const key = `${typeUrl}\u0001${s.group ?? ""}\u0001${rule}\u0001${names}`;
    const version = this.cache.currentVersion();
    const hit = this.shared.get(key);
    if (hit?.version === version) return hit;
    const nonce = this.context.nonce();
    const made: SharedResponse = { version, nonce, bytes: encodeDiscoveryResponse(make(nonce)) };
    // One entry per view: an older version's is replaced, so the map holds as many entries as there are views.
    this.shared.set(key, made);
    return made;
  }

  /** The cache's view of a type as this stream may see it. */
  private viewFor(s: Stream, typeUrl: string): Map<string, CachedResource> {
    const view = this.cache.view(typeUrl, s.group);
    if (!s.visible) return view;
    return new Map([...view].filter(([name]) => s.visible!(typeUrl, name)));
  }

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

  private flush(s: ServedStream): void {
    s.flushScheduled = false;
    if (!this.streams.has(s.id)) return;
    const types = [...s.dirty].sort((a, b) => rank(a) - rank(b));
    s.dirty.clear();
    for (const t of types) s.protocol.send(t);
  }
}
