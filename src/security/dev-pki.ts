import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ClientTls } from "./client-tls.js";

const run = promisify(execFile);

/** A certificate and its key, as files. */
export interface CertFiles {
  cert: string;
  key: string;
}

export interface DevPki {
  /** The CA certificate: what the server trusts for clients and clients trust for the server. */
  ca: string;
  server: CertFiles;
  /** Client certificates by the name asked for, each naming its identity. */
  clients: Record<string, CertFiles & { identity: string }>;
}

export interface DevPkiRequest {
  /** The names the server is reached at: IP addresses and DNS names. */
  serverNames: string[];
  /** Each client's file name and identity: a SPIFFE ID (a URI SAN) or a plain name (the CN). */
  clients: Array<{ name: string; identity: string }>;
  days?: number;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/**
 * A leaf certificate signed by `ca` (a client's or a server's), with the subject and SANs given: `name.crt` and
 * `name.key` in `dir`.
 */
export async function issueCertificate(
  dir: string,
  ca: CertFiles,
  name: string,
  subject: string,
  san: string[],
  days: string,
): Promise<CertFiles> {
  const f = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  await writeFile(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth,clientAuth",
      ...(san.length ? [`subjectAltName=${san.join(",")}`] : []),
    ].join("\n") + "\n",
  );
  await run("openssl", ["req", ...EC, "-keyout", f.key, "-out", csr, "-subj", subject]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    f.cert,
    "-days",
    days,
    "-extfile",
    ext,
  ]);
  return f;
}

/**
 * A throwaway CA with a server certificate and client certificates, made by the openssl CLI: for the demo, the
 * tests and a first try, never for production (where certificates come from the platform's own CA or SPIRE).
 */
export async function makeDevPki(dir: string, req: DevPkiRequest): Promise<DevPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const days = String(req.days ?? 30);
  const ca = { cert: join(dir, "ca.crt"), key: join(dir, "ca.key") };
  await run("openssl", [
    "req",
    "-x509",
    ...EC,
    "-keyout",
    ca.key,
    "-out",
    ca.cert,
    "-days",
    days,
    "-subj",
    "/CN=pgshift development CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const leaf = (name: string, cn: string, san: string[]) =>
    issueCertificate(dir, ca, name, `/CN=${cn.replace(/[/\\]/g, "_")}`, san, days);
  const isIp = (n: string) => /^[\d.]+$|:/.test(n);
  const server = await leaf(
    "server",
    "pgshift",
    req.serverNames.map((n) => (isIp(n) ? `IP:${n}` : `DNS:${n}`)),
  );
  const clients: DevPki["clients"] = {};
  for (const c of req.clients) {
    const spiffe = c.identity.startsWith("spiffe://");
    clients[c.name] = {
      ...(await leaf(c.name, spiffe ? c.name : c.identity, spiffe ? [`URI:${c.identity}`] : [])),
      identity: c.identity,
    };
  }
  return { ca: ca.cert, server, clients };
}

/** A client's material from the dev PKI, read into memory as clients take it. */
export function clientTlsOf(pki: DevPki, name: string): ClientTls {
  const c = pki.clients[name];
  if (!c) throw new Error(`no client certificate named ${name} in this PKI`);
  return { ca: readFileSync(pki.ca), cert: readFileSync(c.cert), key: readFileSync(c.key) };
}

/** The `serve` flags for mutual TLS with the dev PKI's server certificate, its CA for clients, and a policy file. */
export function serveTlsArgs(pki: DevPki, policyFile: string): string[] {
  return [
    "--tls-cert",
    pki.server.cert,
    "--tls-key",
    pki.server.key,
    "--tls-client-ca",
    pki.ca,
    "--policy",
    policyFile,
  ];
}
