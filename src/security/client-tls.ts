import { readFileSync } from "node:fs";
import { InvalidArgumentError } from "../domain/errors.js";

/** A client's mutual-TLS material: the CA that signed the server's certificate, and the client's own pair. */
export interface ClientTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The flags (or environment) a client command takes for mutual TLS. */
export const CLIENT_TLS_OPTIONS = {
  ca: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
} as const;

/**
 * Reads --ca, --cert and --key (or PGSHIFT_CA, PGSHIFT_CLIENT_CERT, PGSHIFT_CLIENT_KEY): all three, or none for a
 * cleartext connection to a service run with --insecure.
 */
export function clientTls(
  values: { ca?: string; cert?: string; key?: string },
  env: NodeJS.ProcessEnv = process.env,
): ClientTls | undefined {
  const files = {
    ca: values.ca ?? env.PGSHIFT_CA,
    cert: values.cert ?? env.PGSHIFT_CLIENT_CERT,
    key: values.key ?? env.PGSHIFT_CLIENT_KEY,
  };
  const given = Object.entries(files).filter(([, v]) => v);
  if (given.length === 0) return undefined;
  if (given.length < 3) {
    const missing = Object.entries(files)
      .filter(([, v]) => !v)
      .map(([k]) => `--${k}`);
    throw new InvalidArgumentError(`mutual TLS needs --ca, --cert and --key together; missing ${missing.join(", ")}`);
  }
  const read = (flag: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new InvalidArgumentError(`--${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  return { ca: read("ca", files.ca!), cert: read("cert", files.cert!), key: read("key", files.key!) };
}
