import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import { InvalidArgumentError } from "../domain/errors.js";
import { clientTls, type ClientTls } from "../security/client-tls.js";

export { CLIENT_TLS_OPTIONS } from "../security/client-tls.js";

/**
 * The gRPC transport a command talks to the API with: mutual TLS when --ca, --cert and --key are given (the URL
 * then says https), cleartext for a service run --insecure.
 */
export function apiTransport(
  values: { api?: string; ca?: string; cert?: string; key?: string },
  env: NodeJS.ProcessEnv = process.env,
): Transport {
  const tls = clientTls(values, env);
  const api = values.api ?? env.PGSHIFT_API ?? (tls ? "https://127.0.0.1:50051" : "http://127.0.0.1:50051");
  return transportFor(api, tls);
}

export function transportFor(api: string, tls: ClientTls | undefined): Transport {
  if (tls && api.startsWith("http:"))
    throw new InvalidArgumentError(`--api ${api} is cleartext but TLS files were given: use https://`);
  if (!tls && api.startsWith("https:"))
    throw new InvalidArgumentError(`--api ${api} needs --ca, --cert and --key (mutual TLS)`);
  return createGrpcTransport({
    baseUrl: api,
    nodeOptions: tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined,
  });
}
