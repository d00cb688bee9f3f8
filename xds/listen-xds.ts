import * as grpc from "@grpc/grpc-js";
import type { AdsServer } from "./ads-server.js";

export interface XdsListener {
  port: number;
  close(): Promise<void>;
}

/** Serves ADS on its own gRPC port (Envoy and gRPC's xDS client speak it over HTTP/2). */
export async function listenXds(
  ads: AdsServer,
  host: string,
  port: number,
  credentials = grpc.ServerCredentials.createInsecure(),
): Promise<XdsListener> {
  const server = new grpc.Server({
    // Proxies hold their stream for hours; keepalives find the dead ones.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.http2.min_ping_interval_without_data_ms": 10_000,
  });
  ads.addTo(server);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port: bound,
    // Streams to proxies never end by themselves: give them a moment, then cut them.
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}
