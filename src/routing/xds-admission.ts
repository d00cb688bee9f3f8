import type { Admission, StreamView, XdsNode, XdsPeer } from "../../xds/index.js";
import { certificateIdentity } from "../security/identity.js";
import type { Policy } from "../security/policy.js";

export interface XdsAdmissionOptions {
  /** Over mutual TLS a proxy must be who its node id says; over cleartext nothing is known of it. */
  mtls: boolean;
  policy: () => Policy;
  connected: () => StreamView[];
  /** Streams one identity may hold at once (a sidecar holds one; a restart briefly two). */
  maxStreamsPerIdentity: number;
}

/**
 * Between a sidecar's identity and its instance name in a node id. SPIFFE IDs cannot hold it, and an identity (a
 * CN) that does is refused: so a node id names exactly one identity, the part before the first separator. With "/"
 * as the separator, identity `…/team` could claim node id `…/team/sa/x`, another identity's.
 */
export const INSTANCE_SEPARATOR = "#";

/** The identity a node id belongs to: all of it, or what stands before the instance separator. */
export function nodeIdentity(nodeId: string): string {
  const i = nodeId.indexOf(INSTANCE_SEPARATOR);
  return i < 0 ? nodeId : nodeId.slice(0, i);
}

/**
 * Whether a proxy's stream is served, under which identity, and what it sees. Over mutual TLS its node id must be
 * its certificate's identity, or that identity followed by "#" and an instance name (`…/sa/billing#pod-7`), so a
 * client cannot ACK or NACK in another sidecar's name; it receives only the listeners and clusters of the
 * databases the policy lets its identity reach (both are named after the database).
 */
export function xdsAdmission(opts: XdsAdmissionOptions): (node: XdsNode, peer: XdsPeer) => Admission {
  // One rule per identity (it reads the policy in force at each call): streams of one identity see the same
  // resources, so the ADS server encodes their responses once.
  const rules = new Map<string, (typeUrl: string, name: string) => boolean>();
  const ruleOf = (identity: string) => {
    let rule = rules.get(identity);
    if (!rule) rules.set(identity, (rule = (_type, name) => opts.policy().proxyMayReach(identity, name)));
    return rule;
  };
  return (node, peer) => {
    if (!opts.mtls) return {};
    const identity = certificateIdentity(peer.certificate);
    if (!identity) return { refuse: "the client certificate names no identity (no SPIFFE URI SAN, no CN)" };
    if (identity.includes(INSTANCE_SEPARATOR)) {
      return {
        refuse: `the certificate's identity ${identity.slice(0, 200)} holds "${INSTANCE_SEPARATOR}", which separates an identity from its instance in a node id: issue one without it`,
      };
    }
    if (nodeIdentity(node.id) !== identity) {
      return {
        refuse: `node id "${node.id.slice(0, 200)}" does not belong to the certificate's identity ${identity}: use the identity itself, or it followed by "${INSTANCE_SEPARATOR}" and an instance name`,
      };
    }
    const held = opts.connected().filter((s) => s.identity === identity).length;
    if (held >= opts.maxStreamsPerIdentity) {
      return {
        refuse: `${identity} already holds ${held} xDS streams, the most one identity may hold; close one first`,
        code: 8,
      };
    }
    return { identity, visible: ruleOf(identity) };
  };
}
