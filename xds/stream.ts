import type { CachedResource } from "./cache.js";
import { TYPE } from "./envoy-protos.js";

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

/** Subscribed names of one type; "*" means every resource of the type (wildcard). */
export type Subscription = Set<string> | "*";

/** What both variants of the protocol keep of a stream: who it is, what it subscribed to, what is left to send. */
export interface Stream extends StreamView {
  group: string | undefined;
  visible: ((typeUrl: string, name: string) => boolean) | undefined;
  /** Requests in the current one-second window, for the flood bound. */
  window: { start: number; count: number };
  subs: Map<string, Subscription>;
  dirty: Set<string>;
  flushScheduled: boolean;
}

/** What a protocol variant needs of the server: the cache as the stream may see it, nonces, and ACK reporting. */
export interface ProtocolContext {
  view(s: Stream, typeUrl: string): Map<string, CachedResource>;
  /**
   * The response for what a stream subscribes to, encoded once for every stream that sees the same resources at
   * the same cache version (same group, same visibility rule, same names), with one nonce for all of them (a nonce
   * only has to be unique on its stream). Undefined when the stream's view is its own.
   */
  sharedSotw(
    s: Stream,
    typeUrl: string,
    sub: Subscription,
    make: (nonce: string) => object,
  ): SharedResponse | undefined;
  currentVersion(): number;
  nonce(): string;
  acked(s: Stream, typeUrl: string, version: number): void;
  nacked(s: Stream, typeUrl: string, version: number, message: string): void;
}

export interface SharedResponse {
  version: number;
  nonce: string;
  bytes: Buffer;
}

/** One variant of ADS (state of the world, or incremental) on one stream. */
export interface Protocol<Req> {
  /** Handles a request the server admitted (its type served, its bounds kept). */
  onRequest(req: Req): void;
  /** Sends what changed in a type the stream subscribes to. */
  send(typeUrl: string): void;
  outcome(typeUrl: string, name: string, version: number): AckOutcome;
}

/** LDS and CDS are wildcard when the first request names nothing; other types are always by name. */
export const WILDCARD_CAPABLE: ReadonlySet<string> = new Set([TYPE.listener, TYPE.cluster]);

export function sameSubs(a: Subscription, b: Subscription): boolean {
  if (a === "*" || b === "*") return a === b;
  return a.size === b.size && [...a].every((n) => b.has(n));
}

export function emptyAckState(): TypeAckState {
  return { ackedVersion: undefined, nackedVersion: undefined, nackMessage: undefined };
}
