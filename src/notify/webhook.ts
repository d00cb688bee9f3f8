import { createHmac } from "node:crypto";
import type { Webhook } from "./hooks-file.js";

/**
 * The signature a receiver checks: HMAC-SHA256 with the shared secret over "<timestamp>.<body>", hex. The timestamp
 * (seconds, also sent) lets a receiver refuse a replay of an old delivery.
 */
export function signature(secret: string, timestamp: number, body: string): string {
  return createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
}

/** POSTs one delivery; resolves with what went wrong, or undefined when the receiver took it (2xx). */
export async function deliver(hook: Webhook, id: string, body: string, timeoutMs = 5000): Promise<string | undefined> {
  const ts = Math.floor(Date.now() / 1000);
  try {
    const res = await fetch(hook.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "pgshift-notifier",
        "x-pgshift-delivery": id,
        "x-pgshift-timestamp": String(ts),
        "x-pgshift-signature": `sha256=${signature(hook.secret, ts, body)}`,
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "error",
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.ok ? undefined : `HTTP ${res.status}`;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return err.cause?.code ?? err.name ?? err.message;
  }
}
