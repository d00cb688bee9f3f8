import { existsSync, readFileSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { extname, join, normalize, sep } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
};

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/**
 * The web console's built files (web/, built by Vite into dist/web): GET / and /assets/… on the API port, nothing
 * else. The RPC paths (/package.Service/Method) are never files. Every asset is local; the page allows no other origin.
 */
export function consoleFiles(dir: string): (req: Req, res: Res) => boolean {
  const root = normalize(dir) + sep;
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
    if (/^\/[a-z0-9_.]+\.[A-Za-z0-9_]+\/[A-Za-z0-9_]+$/.test(path)) return false;
    const file = normalize(join(root, path === "/" ? "index.html" : path));
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      (res as ServerResponse).writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
      return true;
    }
    (res as ServerResponse).writeHead(200, {
      "content-type": TYPES[extname(file)] ?? "application/octet-stream",
      // Hashed asset names change with their content; the page itself is looked at again each time.
      "cache-control": path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache",
      "content-security-policy":
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
      "x-content-type-options": "nosniff",
    });
    if (req.method === "HEAD") res.end();
    else (res as ServerResponse).end(readFileSync(file));
    return true;
  };
}
