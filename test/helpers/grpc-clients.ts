import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { clientTlsOf, type DevPki } from "../../src/security/dev-pki.js";

/**
 * Independent clients: @grpc/grpc-js with the .proto files loaded at run time
 * by proto-loader, sharing nothing with the service's generated code.
 */
const ROOT = resolve(import.meta.dirname, "../..");
const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(dirname(require.resolve("@grpc/reflection/package.json")), "build/proto");
const HEALTH_PROTO = join(dirname(require.resolve("grpc-health-check/package.json")), "proto");

const LOADER: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

type Ctor = new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => grpc.Client;

function load(file: string, includeDirs: string[], service: string): Ctor {
  const def = protoLoader.loadSync(file, { ...LOADER, includeDirs });
  const pkg = grpc.loadPackageDefinition(def);
  let cur: unknown = pkg;
  for (const part of service.split(".")) cur = (cur as Record<string, unknown>)[part];
  return cur as Ctor;
}

export type AnyClient = grpc.Client & Record<string, any>;

/** grpc-js credentials for mutual TLS as the dev PKI's client `name`. */
export function mtlsCredentials(pki: DevPki, name: string): grpc.ChannelCredentials {
  const t = clientTlsOf(pki, name);
  return grpc.credentials.createSsl(t.ca, t.key, t.cert);
}

export function migrationClient(
  address: string,
  creds = grpc.credentials.createInsecure(),
  options: grpc.ChannelOptions = {},
): AnyClient {
  const C = load("migration/v1/migration.proto", [join(ROOT, "proto")], "migration.v1.MigrationService");
  return new C(address, creds, options) as AnyClient;
}

export function campaignClient(address: string, creds = grpc.credentials.createInsecure()): AnyClient {
  const C = load("migration/v1/campaign.proto", [join(ROOT, "proto")], "migration.v1.CampaignService");
  return new C(address, creds) as AnyClient;
}

export function cdcClient(address: string, creds = grpc.credentials.createInsecure()): AnyClient {
  const C = load("migration/v1/migration.proto", [join(ROOT, "proto")], "migration.v1.CdcService");
  return new C(address, creds) as AnyClient;
}

export function healthClient(address: string, creds = grpc.credentials.createInsecure()): AnyClient {
  const C = load("health/v1/health.proto", [HEALTH_PROTO], "grpc.health.v1.Health");
  return new C(address, creds) as AnyClient;
}

export function reflectionClient(address: string, version: "v1" | "v1alpha"): AnyClient {
  const C = load(
    `grpc/reflection/${version}/reflection.proto`,
    [REFLECTION_PROTO],
    `grpc.reflection.${version}.ServerReflection`,
  );
  return new C(address, grpc.credentials.createInsecure()) as AnyClient;
}

/** Calls a unary method and resolves with its response, or rejects with the grpc-js ServiceError. */
export function unary<T = any>(
  client: AnyClient,
  method: string,
  req: unknown,
  metadata = new grpc.Metadata(),
): Promise<T> {
  return new Promise((res, rej) => {
    client[method](req, metadata, (err: grpc.ServiceError | null, out: T) => (err ? rej(err) : res(out)));
  });
}

/** Expects a unary call to fail; returns the error for assertions on code and message. */
export async function unaryError(client: AnyClient, method: string, req: unknown): Promise<grpc.ServiceError> {
  try {
    await unary(client, method, req);
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error(`${method} succeeded but was expected to fail`);
}

export { grpc };
