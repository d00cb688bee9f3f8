import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type http from "node:http";

/** Credentials an endpoint accepts: what the SDK must have signed with. */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Why a request's signature is refused, in AWS's words: the code the protocol names it by is the caller's to pick. */
export type SignatureFault = { kind: "missing" | "unknown-key" | "mismatch" | "expired" | "scope"; message: string };

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters, as %XX in upper case. */
function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** How long a signature stays good on AWS: 15 minutes either way of its x-amz-date. */
const SKEW_MS = 15 * 60_000;

/**
 * Verifies an AWS Signature Version 4 `Authorization` header the way AWS does: the canonical request rebuilt from
 * what arrived (method, path, query, the signed headers, the payload's hash), signed again with the secret of the
 * access key it names, for the scope it names, and compared. Undefined when it holds.
 */
export function verifySigV4(
  req: http.IncomingMessage,
  body: string,
  keys: AccessKey[],
  expect: { region: string; services: string[]; now?: number },
): SignatureFault | undefined {
  const auth = req.headers.authorization ?? "";
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  if (!m) return { kind: "missing", message: "Request is missing Authentication Token" };
  const [, keyId, date, region, service, signedHeaders, signature] = m as unknown as string[];
  const key = keys.find((k) => k.accessKeyId === keyId);
  if (!key) return { kind: "unknown-key", message: "The security token included in the request is invalid." };
  if (region !== expect.region || !expect.services.includes(service!)) {
    return {
      kind: "scope",
      message: `Credential should be scoped to a valid region and service (${expect.region}, one of ${expect.services.join(", ")}); got ${region}/${service}.`,
    };
  }
  const amzDate = String(req.headers["x-amz-date"] ?? "");
  const at = Date.parse(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
  const now = expect.now ?? Date.now();
  if (Number.isNaN(at) || !amzDate.startsWith(date!))
    return {
      kind: "mismatch",
      message: "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP",
    };
  if (Math.abs(now - at) > SKEW_MS) {
    return {
      kind: "expired",
      message: `Signature expired: ${amzDate} is now earlier or later than the server's time by more than 15 minutes.`,
    };
  }
  const url = new URL(req.url ?? "/", "http://x");
  const path =
    url.pathname
      .split("/")
      .map((seg) => uriEncode(decodeURIComponent(seg)))
      .join("/") || "/";
  const query = [...url.searchParams]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a, b], [c, d]) => (a! < c! ? -1 : a! > c! ? 1 : b! < d! ? -1 : b! > d! ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const names = signedHeaders!.split(";");
  const headers = names.map((n) => {
    const v = req.headers[n];
    return `${n}:${(Array.isArray(v) ? v.join(",") : (v ?? "")).trim().replace(/\s+/g, " ")}\n`;
  });
  const payload = String(req.headers["x-amz-content-sha256"] ?? "") || sha256(body);
  if (payload !== "UNSIGNED-PAYLOAD" && payload !== sha256(body))
    return {
      kind: "mismatch",
      message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
    };
  const canonical = [req.method ?? "POST", path, query, headers.join(""), signedHeaders, payload].join("\n");
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${key.secretAccessKey}`, date!), region!), service!), "aws4_request");
  const expected = Buffer.from(hmac(signingKey, toSign).toString("hex"));
  if (!names.includes("host") || !timingSafeEqual(expected, Buffer.from(signature!))) {
    return {
      kind: "mismatch",
      message:
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    };
  }
  return undefined;
}
