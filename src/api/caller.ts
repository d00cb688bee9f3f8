import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { InvalidArgumentError, UnauthenticatedError } from "../domain/errors.js";

export const ACTOR_HEADER = "x-pgshift-actor";

/** Who is calling, as the transport established it. */
export interface Peer {
  /** The identity of the client certificate; undefined on a cleartext (--insecure) listener. */
  identity: string | undefined;
}

/** Set per request by the API listener from the TLS session. */
export const PEER = createContextKey<Peer>(
  { identity: undefined },
  { description: "the caller's authenticated identity" },
);

/** The name a caller states for the human behind a call, checked for shape only: it proves nothing. */
function statedActor(ctx: HandlerContext): string | undefined {
  const v = ctx.requestHeader.get(ACTOR_HEADER)?.trim();
  if (!v) return undefined;
  // Control characters are exactly what is refused here.
  // eslint-disable-next-line no-control-regex
  if (v.length > 200 || /[\u0000-\u001f]/.test(v)) {
    throw new InvalidArgumentError(`header ${ACTOR_HEADER} must be at most 200 printable characters`);
  }
  return v;
}

/**
 * The identity a policy judges: the certificate's, or "anonymous" on a cleartext listener. A trusted certificate
 * that names no identity is refused (UNAUTHENTICATED), never judged as the empty name a pattern might match.
 */
export function identityOf(ctx: HandlerContext): string {
  const identity = ctx.values.get(PEER).identity;
  if (identity === "") {
    throw new UnauthenticatedError(
      "the client certificate names no identity (no SPIFFE ID as a URI SAN, no subject CN): the policy grants identities, so issue it one",
    );
  }
  return identity ?? "anonymous";
}

/**
 * Who did it, for the event log. Over mutual TLS it is the certificate's identity, with the stated human added
 * as such, never in its place; on a cleartext listener only the stated name exists.
 */
export function actorOf(ctx: HandlerContext): string {
  const stated = statedActor(ctx);
  if (ctx.values.get(PEER).identity === undefined) return stated ?? "anonymous";
  const identity = identityOf(ctx);
  return stated ? `${identity} on behalf of ${stated} (stated by the caller)` : identity;
}

/**
 * Whom an approval counts for when a rule asks for two different people: the certificate's identity (a stated name
 * proves nothing); on a cleartext listener the stated name is all there is.
 */
export function approverOf(ctx: HandlerContext): string {
  return ctx.values.get(PEER).identity === undefined ? actorOf(ctx) : identityOf(ctx);
}
