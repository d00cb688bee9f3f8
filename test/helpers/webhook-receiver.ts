import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";

export interface Delivery {
  id: string;
  body: any;
}

/**
 * A team's webhook endpoint, as a receiver would write one: checks each POST's signature with the team's secret
 * (HMAC-SHA256 over "<timestamp>.<body>"), drops a repeat by its delivery id, and refuses the very first POST (HTTP 500)
 * so the sender's retry is seen.
 */
export class WebhookReceiver<T extends string> {
  readonly received = {} as Record<T, Delivery[]>;
  readonly refused: string[] = [];
  badSignatures = 0;
  private server: Server | undefined;

  constructor(private readonly secrets: Record<T, string>) {
    for (const team of Object.keys(secrets) as T[]) this.received[team] = [];
  }

  listen(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const team = (req.url ?? "").slice(1) as T;
        const body = Buffer.concat(chunks).toString("utf8");
        const ts = String(req.headers["x-pgshift-timestamp"] ?? "");
        const id = String(req.headers["x-pgshift-delivery"] ?? "");
        const want = createHmac("sha256", this.secrets[team] ?? "")
          .update(`${ts}.${body}`)
          .digest("hex");
        const sig = Buffer.from(String(req.headers["x-pgshift-signature"] ?? ""));
        const ok = sig.length === want.length + 7 && timingSafeEqual(sig, Buffer.from(`sha256=${want}`));
        if (!ok) {
          this.badSignatures++;
          res.writeHead(401).end();
          return;
        }
        if (this.refused.length === 0) {
          this.refused.push(id);
          res.writeHead(500).end();
          return;
        }
        this.received[team].push({ id, body: JSON.parse(body) });
        res.writeHead(204).end();
      });
    });
    return new Promise((resolve) =>
      this.server!.listen(0, "127.0.0.1", () => {
        const a = this.server!.address() as { port: number };
        resolve(`http://127.0.0.1:${a.port}`);
      }),
    );
  }

  /** Waits until what was received satisfies ok. */
  async until(ok: (r: Record<T, Delivery[]>) => boolean, timeoutMs: number): Promise<Record<T, Delivery[]>> {
    const end = Date.now() + timeoutMs;
    while (!ok(this.received)) {
      if (Date.now() > end)
        throw new Error(
          `webhooks: not all notifications arrived in ${timeoutMs} ms: ${JSON.stringify(Object.fromEntries((Object.entries(this.received) as [T, Delivery[]][]).map(([t, ds]) => [t, ds.map((d) => d.body.kind ?? d.body.text)])))}`,
        );
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.received;
  }

  close(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
