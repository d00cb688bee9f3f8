import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

/**
 * Envoy's .proto files as the @grpc/grpc-js-xds package ships them. buf cannot
 * compile them (their validate.proto is older than the Envoy files), so they
 * are loaded at run time, as gRPC's own xDS client does.
 */
const require = createRequire(import.meta.url);
const DEPS = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
export const ENVOY_INCLUDE_DIRS = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(DEPS, d));

export const TYPE = {
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  tcpProxy: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
} as const;

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };

export const ADS_FILE = "envoy/service/discovery/v3/ads.proto";

/** The resources the service and the proxy encode and decode. The build parses these, and ADS, once (see below). */
export const SERVED_FILES = [
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
];

/** Where `npm run build` writes the parsed descriptors: dist/, one level above the bundle's chunks and the compiled xds/. */
export const PREBUILT_FILE = "envoy-descriptors.json";

interface Prebuilt {
  /** ADS alone: a service definition is made for every message of the root it comes from. */
  ads: protobuf.INamespace;
  files: string[];
  root: protobuf.INamespace;
}

let prebuiltCache: Prebuilt | null | undefined;

/**
 * Envoy's descriptors as the build parsed them. Parsing a few hundred .proto files costs a starting process about a
 * fifth of a second of CPU, and a replica restarted inside a cutover's fenced window must be back fast; running
 * from the sources (no build), the files are parsed as before.
 */
function prebuilt(): Prebuilt | undefined {
  if (prebuiltCache === undefined) {
    const p = join(dirname(fileURLToPath(import.meta.url)), "..", PREBUILT_FILE);
    prebuiltCache = existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as Prebuilt) : null;
  }
  return prebuiltCache ?? undefined;
}

let adsCtor: grpc.ServiceClientConstructor | undefined;

/** The AggregatedDiscoveryService client constructor (its .service is the definition a server adds). */
export function adsClientConstructor(): grpc.ServiceClientConstructor {
  adsCtor ??= (() => {
    const built = prebuilt();
    const def = built
      ? protoLoader.fromJSON(built.ads, LOADER_OPTIONS)
      : protoLoader.loadSync(ADS_FILE, { ...LOADER_OPTIONS, includeDirs: ENVOY_INCLUDE_DIRS });
    const pkg = grpc.loadPackageDefinition(def) as any;
    return pkg.envoy.service.discovery.v3.AggregatedDiscoveryService as grpc.ServiceClientConstructor;
  })();
  return adsCtor;
}

/** The AggregatedDiscoveryService definition, for a grpc-js server. */
export function adsService(): grpc.ServiceDefinition {
  return adsClientConstructor().service;
}

/** A protobufjs root over Envoy's files, to encode and decode resources carried in Any. */
export function envoyRoot(files: string[]): protobuf.Root {
  const built = prebuilt();
  if (built && files.every((f) => built.files.includes(f))) return protobuf.Root.fromJSON(built.root);
  return parseEnvoyProtos(files);
}

/** Envoy's .proto files parsed from the package (what the build does once, and what runs without a build). */
export function parseEnvoyProtos(files: string[]): protobuf.Root {
  // Envoy's files import descriptor.proto, which protobufjs knows but does not register by itself.
  protobuf.common("descriptor", require("protobufjs/google/protobuf/descriptor.json").nested.google.nested.protobuf.nested);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of ENVOY_INCLUDE_DIRS) {
      const p = join(dir, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  root.loadSync(files, { keepCase: true });
  return root;
}
