import protobuf from "protobufjs";
import { envoyRoot } from "../../xds/index.js";

/**
 * Decodes Envoy configuration (YAML or JSON, as Envoy reads it) into its proto message the way Envoy does, and
 * fails where Envoy would: an unknown field, a wrong type, an unknown enum name, an Any whose "@type" names a
 * message that is not there. protobufjs's own fromObject silently drops what it does not know, so this walks
 * the message types itself, then encodes and decodes the result.
 */
export function strictEnvoyDecode(root: protobuf.Root, typeName: string, value: unknown): protobuf.Message {
  const type = root.lookupType(typeName);
  const msg = convert(root, type, value, typeName);
  const bytes = type.encode(type.fromObject(msg as Record<string, unknown>)).finish();
  return type.decode(bytes);
}

const DURATION = /^-?\d+(\.\d{1,9})?s$/;
const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function fail(path: string, what: string): never {
  throw new Error(`${path}: ${what}`);
}

function convert(root: protobuf.Root, type: protobuf.Type, value: unknown, path: string): unknown {
  const full = type.fullName.slice(1);
  switch (full) {
    case "google.protobuf.Duration": {
      if (typeof value !== "string" || !DURATION.test(value))
        fail(path, `a duration such as "1s" or "0.1s" is expected; got ${JSON.stringify(value)}`);
      const secs = Number(value.slice(0, -1));
      return { seconds: Math.trunc(secs), nanos: Math.round((secs - Math.trunc(secs)) * 1e9) };
    }
    case "google.protobuf.Any": {
      const o = object(value, path);
      const url = o["@type"];
      if (typeof url !== "string" || !url.startsWith("type.googleapis.com/"))
        fail(path, 'an Any needs "@type": type.googleapis.com/<message>');
      const inner = lookup(root, url.slice("type.googleapis.com/".length), path);
      const { "@type": _, ...rest } = o;
      const m = convert(root, inner, rest, `${path}<${inner.name}>`);
      return { type_url: url, value: inner.encode(inner.fromObject(m as Record<string, unknown>)).finish() };
    }
    case "google.protobuf.Struct":
      return { fields: {} };
  }
  if (full.startsWith("google.protobuf.") && full.endsWith("Value") && type.fields.value) {
    return { value: scalar(type.fields.value, value, path) };
  }
  const o = object(value, path);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(o)) {
    const field = type.fields[key] ?? Object.values(type.fields).find((f) => camel(f.name) === key);
    if (!field) fail(`${path}.${key}`, `unknown field of ${full}`);
    field.resolve();
    const one = (x: unknown, p: string) =>
      field.resolvedType instanceof protobuf.Type ? convert(root, field.resolvedType, x, p) : scalar(field, x, p);
    if (field.map) {
      out[field.name] = Object.fromEntries(
        Object.entries(object(v, `${path}.${key}`)).map(([k, x]) => [k, one(x, `${path}.${key}.${k}`)]),
      );
    } else if (field.repeated) {
      if (!Array.isArray(v)) fail(`${path}.${key}`, "a list is expected");
      out[field.name] = v.map((x, i) => one(x, `${path}.${key}[${i}]`));
    } else out[field.name] = one(v, `${path}.${key}`);
  }
  return out;
}

function lookup(root: protobuf.Root, name: string, path: string): protobuf.Type {
  try {
    return root.lookupType(name);
  } catch {
    return fail(path, `"@type" names ${name}, which is not among the loaded Envoy messages`);
  }
}

function object(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail(path, "a mapping is expected");
  return v as Record<string, unknown>;
}

function scalar(field: protobuf.Field, v: unknown, path: string): unknown {
  field.resolve();
  if (field.resolvedType instanceof protobuf.Enum) {
    if (typeof v !== "string" || !(v in field.resolvedType.values))
      fail(path, `one of ${Object.keys(field.resolvedType.values).join(", ")} is expected`);
    return v;
  }
  switch (field.type) {
    case "string":
      if (typeof v !== "string") fail(path, "a string is expected");
      return v;
    case "bool":
      if (typeof v !== "boolean") fail(path, "true or false is expected");
      return v;
    case "bytes":
      if (typeof v !== "string") fail(path, "base64 bytes are expected");
      return v;
    default:
      if (typeof v !== "number" && !(typeof v === "string" && /^-?\d+$/.test(v)))
        fail(path, `a number (${field.type}) is expected`);
      if (/int|fixed/.test(field.type) && !Number.isInteger(Number(v)))
        fail(path, `a whole number (${field.type}) is expected`);
      if (/^u|fixed/.test(field.type) && Number(v) < 0) fail(path, `a non-negative number (${field.type}) is expected`);
      return Number(v);
  }
}

/** Envoy's bootstrap and the extensions a pgshift sidecar configures, from the .proto files @grpc/grpc-js-xds ships. */
export function envoyBootstrapRoot(): protobuf.Root {
  return envoyRoot([
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
  ]);
}
