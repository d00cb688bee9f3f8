/** A generic xDS management server: a resource cache and ADS (SotW and delta) with per-node ACK state. */
export { ResourceCache, type CachedResource, type CacheChange } from "./cache.js";
export {
  AdsServer,
  DEFAULT_ADS_LIMITS,
  type AckOutcome,
  type Admission,
  type AdsLimits,
  type AdsServerOptions,
  type StreamView,
  type XdsNode,
  type XdsPeer,
} from "./ads-server.js";
export { listenXds, type XdsListener } from "./listen-xds.js";
export { adsClientConstructor, adsService, envoyRoot, TYPE } from "./envoy-protos.js";
