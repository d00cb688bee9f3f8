import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { PEER } from "./caller.js";
import { observeStream } from "./stream-response.js";

/** What one identity may take of the API at once, so that a slow or flooding client cannot starve the others. */
export interface CallerLimits {
  /** Open streams (watches) at once. */
  streams: number;
  /** Sustained requests per second, and the burst allowed above it. */
  requestsPerSecond: number;
  burst: number;
}

interface Usage {
  tokens: number;
  refilledAt: number;
  streams: number;
}

/** Buckets idle this long are forgotten, so a scan of many identities leaves nothing behind. */
const IDLE_MS = 60_000;

/**
 * Per-identity bounds on the API: a token bucket for requests and a count of open streams. Beyond either, the
 * call answers RESOURCE_EXHAUSTED saying which bound and whose. Over cleartext every caller is "anonymous" and
 * shares one budget.
 */
export function callerLimits(limits: CallerLimits, now: () => number = () => performance.now()): Interceptor {
  const usage = new Map<string, Usage>();
  let sweptAt = now();
  const sweep = (t: number) => {
    if (t - sweptAt < IDLE_MS) return;
    sweptAt = t;
    for (const [k, u] of usage) if (u.streams === 0 && t - u.refilledAt > IDLE_MS) usage.delete(k);
  };
  return (next) => async (req) => {
    const who = req.contextValues.get(PEER).identity ?? "anonymous";
    const t = now();
    sweep(t);
    const u = usage.get(who) ?? { tokens: limits.burst, refilledAt: t, streams: 0 };
    usage.set(who, u);
    u.tokens = Math.min(limits.burst, u.tokens + ((t - u.refilledAt) / 1000) * limits.requestsPerSecond);
    u.refilledAt = t;
    if (u.tokens < 1) {
      throw new ConnectError(
        `${who} sends more than ${limits.requestsPerSecond} requests a second (burst ${limits.burst}); slow down and retry`,
        Code.ResourceExhausted,
      );
    }
    u.tokens -= 1;
    if (!req.stream) return next(req);
    if (u.streams >= limits.streams) {
      throw new ConnectError(
        `${who} already has ${u.streams} open streams, the most one identity may hold; close one first`,
        Code.ResourceExhausted,
      );
    }
    u.streams++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      u.streams--;
    };
    // A stream whose client leaves before its first message never runs the generator's finally: the signal tells.
    // The listener never fires for a signal aborted already (a client that left before this ran).
    if (req.signal.aborted) release();
    else req.signal.addEventListener("abort", release, { once: true });
    try {
      const res = await next(req);
      if (!res.stream) {
        release();
        return res;
      }
      return { ...res, message: observeStream(res.message, { onEnd: release }) };
    } catch (e) {
      release();
      throw e;
    }
  };
}
