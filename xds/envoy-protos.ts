import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";

/**
 * Envoy's .proto files as the @grpc/grpc-js-xds package ships them. buf cannot
 * compile them (their validate.proto is older than the Envoy files), so they
 * are loaded at run time, as gRPC's own xDS client does.
 */
const require = createRequire(import.meta.url);

/** Resolved only when parsing: a built service reads the build's descriptors and needs the package not at all. */
function envoyIncludeDirs(): string[] {
  const deps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
  return ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(deps, d));
}

export const TYPE = {
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  tcpProxy: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
} as const;

/** How decoded messages look (what @grpc/proto-loader's options of the same names give): 64-bit integers and enums as strings. */
const DECODED: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, oneofs: true };

export const ADS_FILE = "envoy/service/discovery/v3/ads.proto";

/** The resources the service and the proxy encode and decode. The build parses these, and ADS, once (see below). */
export const SERVED_FILES = [
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
];

/** What the build parses into one root: the served resources and the ADS service. */
export const PREBUILT_FILES = [...SERVED_FILES, ADS_FILE];

/** Where `npm run build` writes the parsed descriptors: dist/, one level above the bundle's chunks and the compiled xds/. */
export const PREBUILT_FILE = "envoy-descriptors.json";

interface Prebuilt {
  files: string[];
  root: protobuf.INamespace;
}

let prebuiltRoot: protobuf.Root | null | undefined;

/**
 * Envoy's descriptors as the build parsed them, as one root shared by whoever needs it. Parsing a few hundred .proto
 * files costs a starting process about a fifth of a second of CPU, and a replica restarted inside a cutover's fenced
 * window must be back fast; running from the sources (no build), the files are parsed as before.
 */
function prebuilt(files: string[]): protobuf.Root | undefined {
  if (prebuiltRoot === undefined) {
    const p = join(dirname(fileURLToPath(import.meta.url)), "..", PREBUILT_FILE);
    const built = existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as Prebuilt) : undefined;
    prebuiltRoot =
      built && PREBUILT_FILES.every((f) => built.files.includes(f)) ? protobuf.Root.fromJSON(built.root) : null;
  }
  return prebuiltRoot && files.every((f) => PREBUILT_FILES.includes(f)) ? prebuiltRoot : undefined;
}

/**
 * One bidirectional-streaming method of ADS, coded as @grpc/proto-loader would code it. Built by hand from the two
 * message types: proto-loader would make a definition, with its file descriptors, for each of the few hundred
 * messages ADS's files reach, a tenth of a second of a restarting replica's CPU for two methods.
 */
function streamingMethod(
  root: protobuf.Root,
  name: string,
  request: string,
  response: string,
): grpc.MethodDefinition<object, object> {
  const req = root.lookupType(request);
  const res = root.lookupType(response);
  const serialize = (t: protobuf.Type) => (o: object) => Buffer.from(t.encode(t.fromObject(o)).finish());
  const deserialize = (t: protobuf.Type) => (b: Buffer) => t.toObject(t.decode(b), DECODED);
  // grpc-js answers a request its deserializer throws on with INTERNAL, as if the server had failed: an undecodable
  // request reaches the handler marked instead, which ends the stream with INVALID_ARGUMENT, the client's mistake.
  const deserializeRequest = (b: Buffer) => {
    try {
      return deserialize(req)(b);
    } catch (e) {
      return { [UNDECODABLE]: `the request does not decode as ${req.fullName.slice(1)}: ${(e as Error).message}` };
    }
  };
  return {
    path: `/envoy.service.discovery.v3.AggregatedDiscoveryService/${name}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: serialize(req),
    requestDeserialize: deserializeRequest,
    // A response already encoded (one state-of-the-world push shared by many streams) is written as it is.
    responseSerialize: (o: object) => (Buffer.isBuffer(o) ? o : serialize(res)(o)),
    responseDeserialize: deserialize(res),
    originalName: name[0]!.toLowerCase() + name.slice(1),
  };
}

/** On a request that did not decode, the reason it did not. */
export const UNDECODABLE = Symbol("undecodable");

let adsCtor: grpc.ServiceClientConstructor | undefined;

/** The AggregatedDiscoveryService client constructor (its .service is the definition a server adds). */
export function adsClientConstructor(): grpc.ServiceClientConstructor {
  adsCtor ??= (() => {
    const root = envoyRoot([ADS_FILE]);
    const d = "envoy.service.discovery.v3.";
    return grpc.makeGenericClientConstructor(
      {
        StreamAggregatedResources: streamingMethod(
          root,
          "StreamAggregatedResources",
          `${d}DiscoveryRequest`,
          `${d}DiscoveryResponse`,
        ),
        DeltaAggregatedResources: streamingMethod(
          root,
          "DeltaAggregatedResources",
          `${d}DeltaDiscoveryRequest`,
          `${d}DeltaDiscoveryResponse`,
        ),
      },
      "AggregatedDiscoveryService",
    );
  })();
  return adsCtor;
}

/** Encodes a DiscoveryResponse once, for writing to many streams (see responseSerialize above). */
export function encodeDiscoveryResponse(msg: object): Buffer {
  responseType ??= envoyRoot([ADS_FILE]).lookupType("envoy.service.discovery.v3.DiscoveryResponse");
  return Buffer.from(responseType.encode(responseType.fromObject(msg)).finish());
}
let responseType: protobuf.Type | undefined;

/** The AggregatedDiscoveryService definition, for a grpc-js server. */
export function adsService(): grpc.ServiceDefinition {
  return adsClientConstructor().service;
}

/**
 * What the build writes: the messages and enums the prebuilt files define, and those their fields reach, nothing
 * else. The files import about twice as many types as that (annotations, options, their extensions): building and
 * resolving those cost a restarting replica tens of milliseconds of CPU for types it never encodes.
 */
export function prebuiltDescriptors(): Prebuilt {
  const full = parseEnvoyProtos(PREBUILT_FILES);
  full.resolveAll();
  const keep = new Set<string>();
  const todo: protobuf.ReflectionObject[] = [];
  const defined = (o: protobuf.ReflectionObject) => PREBUILT_FILES.some((f) => o.filename?.endsWith(f));
  (function collect(ns: protobuf.NamespaceBase) {
    for (const o of ns.nestedArray) {
      if ((o instanceof protobuf.Type || o instanceof protobuf.Enum || o instanceof protobuf.Service) && defined(o))
        todo.push(o);
      if (o instanceof protobuf.Namespace || o instanceof protobuf.Type) collect(o);
    }
  })(full);
  while (todo.length > 0) {
    const o = todo.pop()!;
    if (keep.has(o.fullName)) continue;
    keep.add(o.fullName);
    if (o instanceof protobuf.Type) for (const f of o.fieldsArray) if (f.resolvedType) todo.push(f.resolvedType);
    if (o instanceof protobuf.Service)
      for (const m of o.methodsArray) todo.push(m.resolvedRequestType!, m.resolvedResponseType!);
  }
  // The JSON tree, less what is not kept (a namespace stays while it holds something kept).
  const prune = (json: protobuf.INamespace, path: string): boolean => {
    if (!json.nested) return false;
    for (const [name, child] of Object.entries(json.nested)) {
      const fullName = `${path}.${name}`;
      const kept = keep.has(fullName);
      const holds = prune(child as protobuf.INamespace, fullName);
      if (!kept && !holds) delete json.nested[name];
    }
    if (Object.keys(json.nested).length === 0) delete json.nested;
    return json.nested !== undefined;
  };
  const root = full.toJSON();
  prune(root, "");
  // What is written must stand on its own: every kept field's type is kept.
  protobuf.Root.fromJSON(root).resolveAll();
  return { files: PREBUILT_FILES, root };
}

/** A protobufjs root over Envoy's files, to encode and decode resources carried in Any. */
export function envoyRoot(files: string[]): protobuf.Root {
  return prebuilt(files) ?? parseEnvoyProtos(files);
}

/** Envoy's .proto files parsed from the package (what the build does once, and what runs without a build). */
export function parseEnvoyProtos(files: string[]): protobuf.Root {
  // Envoy's files import descriptor.proto, which protobufjs knows but does not register by itself.
  protobuf.common(
    "descriptor",
    require("protobufjs/google/protobuf/descriptor.json").nested.google.nested.protobuf.nested,
  );
  const root = new protobuf.Root();
  const dirs = envoyIncludeDirs();
  root.resolvePath = (_origin, target) => {
    for (const dir of dirs) {
      const p = join(dir, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  root.loadSync(files, { keepCase: true });
  return root;
}
