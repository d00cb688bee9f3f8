import { AdsServer, listenXds, ResourceCache } from "../../xds/index.js";
import type { ServiceConfig } from "../config.js";
import { ProxyStatusTracker } from "../routing/proxy-status.js";
import { RouteSync } from "../routing/route-sync.js";
import { xdsAdmission } from "../routing/xds-admission.js";
import { grpcMtlsCredentials } from "../security/grpc-certificates.js";
import type { Logger } from "../telemetry/log.js";
import type { Core } from "./core.js";

/** Streams one proxy identity may hold at once. */
const XDS_STREAMS_PER_IDENTITY = 8;

export interface XdsPlane {
  ads: AdsServer;
  port: number;
  close(): Promise<void>;
}

/**
 * The xDS management server: the routes in the store, kept in the resource cache, served to the proxies that the
 * guard admits; whose ACKs the tracker records for ROUTING to wait on.
 */
export async function startXdsPlane(core: Core, config: ServiceConfig, log: Logger): Promise<XdsPlane> {
  const { guard, metrics } = core;
  const cache = new ResourceCache();
  const ads: AdsServer = new AdsServer(cache, {
    admit: xdsAdmission({
      mtls: Boolean(guard.tls),
      policy: guard.policy,
      connected: () => ads.connected(),
      maxStreamsPerIdentity: XDS_STREAMS_PER_IDENTITY,
    }),
  });
  const sync = new RouteSync(core.routes, cache, core.bus, log.child({ component: "routing" }));
  await sync.start();
  const tracker = new ProxyStatusTracker(
    core.store.db,
    ads,
    sync,
    core.identity.id,
    log.child({ component: "routing" }),
    () => core.router.answered(),
  );
  tracker.start();
  const xds = await listenXds(ads, config.host, config.xdsPort, guard.tls ? grpcMtlsCredentials(guard.tls) : undefined);
  log.info("xds listening", { port: xds.port });
  // ACK latency: once per proxy and version, from the version reaching the cache.
  const ackedSeen = new WeakMap<object, Map<string, number>>();
  ads.on("ack", (s: object, typeUrl: string, version: number) => {
    const seen = ackedSeen.get(s) ?? new Map<string, number>();
    ackedSeen.set(s, seen);
    if ((seen.get(typeUrl) ?? 0) >= version) return;
    seen.set(typeUrl, version);
    const made = cache.versionMadeAt(version);
    metrics.xdsAck(typeUrl, made === undefined ? undefined : (performance.now() - made) / 1000);
  });
  ads.on("nack", (_s: object, typeUrl: string) => metrics.xdsNack(typeUrl));
  return {
    ads,
    port: xds.port,
    async close() {
      await tracker.stop();
      ads.close();
      await xds.close();
      await sync.close();
    },
  };
}
