import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { InvalidArgumentError } from "../domain/errors.js";
import { makeDevPki } from "../security/dev-pki.js";

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const DEV_CERTS_OPTIONS = {
  out: { type: "string" },
  "server-name": { type: "string", multiple: true },
  client: { type: "string", multiple: true },
  days: { type: "string" },
} as const;

/** `pgshift dev-certs`: a throwaway CA, a server certificate and client certificates, for a first try or a test bed. */
export async function devCertsCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: DEV_CERTS_OPTIONS,
    strict: true,
  });
  if (!values.out)
    throw new InvalidArgumentError("--out DIR is required: where the CA, server and client certificates are written");
  const clients = (values.client ?? ["operator=spiffe://pgshift.local/sa/operator"]).map((c) => {
    const eq = c.indexOf("=");
    if (eq < 1 || !/^[a-z0-9_-]{1,40}$/i.test(c.slice(0, eq)) || eq === c.length - 1) {
      throw new InvalidArgumentError(
        `--client ${c}: use NAME=IDENTITY, e.g. deployer=spiffe://corp.example/team/billing/sa/deployer`,
      );
    }
    return { name: c.slice(0, eq), identity: c.slice(eq + 1) };
  });
  const days = Number(values.days ?? 30);
  if (!Number.isInteger(days) || days < 1 || days > 825)
    throw new InvalidArgumentError(`--days must be a whole number from 1 to 825; got "${values.days}"`);
  const pki = await makeDevPki(resolve(values.out), {
    serverNames: values["server-name"] ?? ["127.0.0.1", "localhost", "pgshift"],
    clients,
    days,
  });
  process.stdout.write(JSON.stringify(pki, null, 2) + "\n");
}
