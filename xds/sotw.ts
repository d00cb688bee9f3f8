import type { CachedResource } from "./cache.js";
import { rejection, type DiscoveryRequest, type DiscoveryResponse } from "./discovery-messages.js";
import {
  emptyAckState,
  sameSubs,
  WILDCARD_CAPABLE,
  type AckOutcome,
  type Protocol,
  type ProtocolContext,
  type Stream,
  type Subscription,
} from "./stream.js";

/**
 * State-of-the-world ADS on one stream: every response carries all the subscribed resources of its type, and the
 * next request with that response's nonce ACKs it (or NACKs it, with error_detail) as a whole.
 */
export class SotwProtocol implements Protocol<DiscoveryRequest> {
  /** Per type, the last nonce sent and the version it carried. */
  private readonly lastNonce = new Map<string, { nonce: string; version: number }>();

  constructor(
    private readonly s: Stream,
    private readonly ctx: ProtocolContext,
    private readonly write: (msg: DiscoveryResponse | Buffer) => void,
  ) {}

  onRequest(req: DiscoveryRequest): void {
    const typeUrl = req.type_url;
    if (!typeUrl) return;
    const { s } = this;
    const names = req.resource_names ?? [];
    const nonce = req.response_nonce ?? "";
    if (nonce) {
      const last = this.lastNonce.get(typeUrl);
      // A request answering an older response is stale: the spec says to ignore it.
      if (!last || last.nonce !== nonce) return;
      const st = s.acks.get(typeUrl) ?? emptyAckState();
      s.acks.set(typeUrl, st);
      if (req.error_detail) {
        st.nackedVersion = last.version;
        st.nackMessage = rejection(req.error_detail);
        this.ctx.nacked(s, typeUrl, last.version, st.nackMessage);
      } else {
        // The version is the one the answered nonce carried: a client's own version_info could claim any.
        st.ackedVersion = last.version;
        this.ctx.acked(s, typeUrl, last.version);
      }
    }
    const prev = s.subs.get(typeUrl);
    const next: Subscription =
      names.length === 0 || names.includes("*")
        ? WILDCARD_CAPABLE.has(typeUrl) && (prev === undefined || prev === "*")
          ? "*"
          : new Set()
        : new Set(names);
    const changed = prev === undefined || !sameSubs(prev, next);
    s.subs.set(typeUrl, next);
    // First request, or a changed subscription: answer with the current state.
    if (!nonce || changed) this.send(typeUrl);
  }

  send(typeUrl: string): void {
    const sub = this.s.subs.get(typeUrl);
    if (sub === undefined) return;
    const shared = this.ctx.sharedSotw(this.s, typeUrl, sub, (nonce) => this.response(typeUrl, sub, nonce));
    if (shared) {
      this.lastNonce.set(typeUrl, { nonce: shared.nonce, version: shared.version });
      this.write(shared.bytes);
      return;
    }
    const nonce = this.ctx.nonce();
    const msg = this.response(typeUrl, sub, nonce);
    this.lastNonce.set(typeUrl, { nonce, version: Number(msg.version_info) });
    this.write(msg);
  }

  private response(typeUrl: string, sub: Subscription, nonce: string): DiscoveryResponse {
    const view = this.ctx.view(this.s, typeUrl);
    const resources: CachedResource[] =
      sub === "*"
        ? [...view.values()]
        : [...sub].map((n) => view.get(n)).filter((r): r is CachedResource => Boolean(r));
    return {
      version_info: String(this.ctx.currentVersion()),
      type_url: typeUrl,
      nonce,
      resources: resources.map((r) => ({ type_url: typeUrl, value: Buffer.from(r.value) })),
    };
  }

  outcome(typeUrl: string, _name: string, version: number): AckOutcome {
    const st = this.s.acks.get(typeUrl);
    if (st?.nackedVersion !== undefined && st.nackedVersion >= version && (st.ackedVersion ?? -1) < st.nackedVersion)
      return "nacked";
    return st?.ackedVersion !== undefined && st.ackedVersion >= version ? "acked" : "pending";
  }
}
