import { rejection, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from "./discovery-messages.js";
import {
  emptyAckState,
  WILDCARD_CAPABLE,
  type AckOutcome,
  type Protocol,
  type ProtocolContext,
  type Stream,
} from "./stream.js";

/**
 * Incremental ADS on one stream: responses carry only the resources the client does not hold at their version
 * (and the names removed), and ACKs and NACKs are kept per resource.
 */
export class DeltaProtocol implements Protocol<DeltaDiscoveryRequest> {
  /** What the client holds, per type and name. */
  private readonly held = new Map<string, Map<string, number>>();
  /** Responses awaiting ACK, by nonce: the versions each carried. */
  private readonly pending = new Map<string, Map<string, number>>();
  /** Per type and resource, the version acknowledged and the one rejected. */
  private readonly ackedOf = new Map<string, Map<string, number>>();
  private readonly nackedOf = new Map<string, Map<string, { version: number; message: string }>>();

  constructor(
    private readonly s: Stream,
    private readonly ctx: ProtocolContext,
    private readonly write: (msg: DeltaDiscoveryResponse) => void,
  ) {}

  onRequest(req: DeltaDiscoveryRequest): void {
    const typeUrl = req.type_url;
    if (!typeUrl) return;
    const { s } = this;
    if (req.response_nonce) this.answered(typeUrl, req);
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    const first = !s.subs.has(typeUrl);
    let sub = s.subs.get(typeUrl) ?? new Set<string>();
    if (first && subscribe.length === 0 && WILDCARD_CAPABLE.has(typeUrl)) sub = "*";
    if (subscribe.includes("*")) sub = "*";
    if (sub !== "*") {
      for (const n of subscribe) sub.add(n);
      for (const n of unsubscribe) sub.delete(n);
    }
    s.subs.set(typeUrl, sub);
    const held = this.held.get(typeUrl) ?? new Map<string, number>();
    if (first) {
      // Versions the client already holds from an earlier stream: do not send those again.
      for (const [name, v] of Object.entries(req.initial_resource_versions ?? {})) held.set(name, Number(v));
    }
    for (const n of unsubscribe) held.delete(n);
    this.held.set(typeUrl, held);
    if (first || subscribe.length > 0) this.send(typeUrl);
  }

  /** An ACK or a NACK of the response the nonce names; a nonce not awaited (stale, or made up) is ignored. */
  private answered(typeUrl: string, req: DeltaDiscoveryRequest): void {
    const versions = this.pending.get(req.response_nonce!);
    if (!versions) return;
    this.pending.delete(req.response_nonce!);
    const { s } = this;
    const max = Math.max(0, ...versions.values());
    const st = s.acks.get(typeUrl) ?? emptyAckState();
    s.acks.set(typeUrl, st);
    if (req.error_detail) {
      const message = rejection(req.error_detail);
      const nacked = this.nackedOf.get(typeUrl) ?? new Map<string, { version: number; message: string }>();
      for (const [name, version] of versions) nacked.set(name, { version, message });
      this.nackedOf.set(typeUrl, nacked);
      st.nackedVersion = max;
      st.nackMessage = message;
      this.ctx.nacked(s, typeUrl, max, message);
    } else {
      const acked = this.ackedOf.get(typeUrl) ?? new Map<string, number>();
      for (const [name, v] of versions) acked.set(name, v);
      this.ackedOf.set(typeUrl, acked);
      st.ackedVersion = Math.max(max, st.ackedVersion ?? 0);
      this.ctx.acked(s, typeUrl, max);
    }
  }

  send(typeUrl: string): void {
    const sub = this.s.subs.get(typeUrl);
    if (sub === undefined) return;
    const view = this.ctx.view(this.s, typeUrl);
    const held = this.held.get(typeUrl)!;
    const wanted = sub === "*" ? [...view.keys()] : [...sub];
    const resources: DeltaDiscoveryResponse["resources"] = [];
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
    const nonce = this.ctx.nonce();
    this.pending.set(nonce, versions);
    this.write({
      system_version_info: String(this.ctx.currentVersion()),
      type_url: typeUrl,
      nonce,
      resources,
      removed_resources: removed,
    });
  }

  outcome(typeUrl: string, name: string, version: number): AckOutcome {
    const nack = this.nackedOf.get(typeUrl)?.get(name);
    if (nack && nack.version >= version) return "nacked";
    const acked = this.ackedOf.get(typeUrl)?.get(name);
    return acked !== undefined && acked >= version ? "acked" : "pending";
  }
}
