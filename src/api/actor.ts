import type { HandlerContext } from "@connectrpc/connect";
import { InvalidArgumentError } from "../domain/errors.js";

export const ACTOR_HEADER = "x-pgshift-actor";

/** Who is calling, for the event log. Anonymous callers are recorded as such. */
export function actorOf(ctx: HandlerContext): string {
  const v = ctx.requestHeader.get(ACTOR_HEADER)?.trim();
  if (!v) return "anonymous";
  // Control characters are exactly what is refused here.
  // eslint-disable-next-line no-control-regex
  if (v.length > 200 || /[\u0000-\u001f]/.test(v)) {
    throw new InvalidArgumentError(`header ${ACTOR_HEADER} must be at most 200 printable characters`);
  }
  return v;
}
