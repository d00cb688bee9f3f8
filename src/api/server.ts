import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { AddressInfo, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { DescMessage, DescService } from "@bufbuild/protobuf";
import { createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { certificateIdentity } from "../security/identity.js";
import type { TlsMaterial } from "../security/tls-material.js";
import type { Watched } from "../security/watched-files.js";
import { PEER, type Peer } from "./caller.js";
import { explainJsonError } from "./json-errors.js";
import { consoleFiles } from "./console-files.js";

/**
 * The gRPC spec percent-encodes only bytes outside printable ASCII (and "%")
 * in grpc-message. connect-node encodes with encodeURIComponent, and grpc-js
 * decodes with decodeURI, which leaves "%3A", "%3B" and the like as they are:
 * a grpc-js caller would read "local%3Asrc". Re-encode the way the spec says,
 * which every decoder reads back exactly.
 */
export function specEncodeGrpcMessage(encoded: string): string {
  let raw: string;
  try {
    raw = decodeURIComponent(encoded);
  } catch {
    return encoded;
  }
  return Array.from(Buffer.from(raw, "utf8"))
    .map((b) =>
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : "%" + b.toString(16).toUpperCase().padStart(2, "0"),
    )
    .join("");
}

type NodeHeaders = Record<string, string | string[] | number | undefined>;

/**
 * connect-es reports a request body that does not parse as its message as INTERNAL ("parse binary: …"): the
 * client sent it, so it is INVALID_ARGUMENT, and nothing in the service failed.
 */
const UNPARSABLE = /^parse (binary|JSON):/;

function decoded(m: string): string {
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}

/** Says in a client's error message what it got wrong, where the decoder said less (see json-errors.ts). */
type Explain = (message: string) => string;

function fixGrpcMessage(headers: NodeHeaders | undefined, explain: Explain): NodeHeaders | undefined {
  const m = headers?.["grpc-message"];
  if (typeof m === "string") {
    if (String(headers!["grpc-status"]) === "13" && UNPARSABLE.test(decoded(m))) headers!["grpc-status"] = "3";
    headers!["grpc-message"] = specEncodeGrpcMessage(encodeURIComponent(explain(decoded(m))));
  }
  return headers;
}

/** The same for a Connect-protocol unary error, which travels as an HTTP status and a JSON body. */
function fixConnectUnaryError(status: number, body: unknown, explain: Explain): { status: number; body: unknown } {
  if (status < 400 || !(body instanceof Uint8Array)) return { status, body };
  let error: { code?: string; message?: string };
  try {
    error = JSON.parse(Buffer.from(body).toString("utf8")) as typeof error;
  } catch {
    return { status, body };
  }
  if (typeof error.message !== "string") return { status, body };
  const unparsable = status === 500 && error.code === "internal" && UNPARSABLE.test(error.message);
  const message = explain(error.message);
  if (!unparsable && message === error.message) return { status, body };
  return {
    status: unparsable ? 400 : status,
    body: Buffer.from(JSON.stringify({ ...error, ...(unparsable ? { code: "invalid_argument" } : {}), message })),
  };
}

/** A gRPC-Web trailer frame with its grpc-message explained (and spec-encoded as in headers). */
function fixGrpcWebTrailers(frame: Uint8Array, explain: Explain): Uint8Array {
  const text = Buffer.from(frame.subarray(5)).toString("utf8");
  const fixed = text.replace(
    /^grpc-message: (.*)$/im,
    (_, m: string) => `grpc-message: ${specEncodeGrpcMessage(encodeURIComponent(explain(decoded(m))))}`,
  );
  if (fixed === text) return frame;
  const body = Buffer.from(fixed, "utf8");
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x80;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

function withSpecGrpcMessages(
  handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
  inputOf: (path: string) => DescMessage | undefined,
) {
  return (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    const input = inputOf(req.url.split("?")[0]!);
    const explain: Explain = (m) => explainJsonError(m, input);
    const writeHead = res.writeHead.bind(res) as (status: number, headers?: NodeHeaders) => http2.Http2ServerResponse;
    const addTrailers = res.addTrailers.bind(res);
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => http2.Http2ServerResponse;
    let pending: { status: number; headers?: NodeHeaders } | undefined;
    /** Sends the held head, with the first body chunk it may have to correct. */
    const flush = (chunk: unknown): unknown => {
      if (!pending) return chunk;
      const fixed = fixConnectUnaryError(pending.status, chunk, explain);
      const headers = { ...pending.headers };
      if (fixed.body !== chunk && fixed.body instanceof Uint8Array && headers["content-length"] !== undefined)
        headers["content-length"] = fixed.body.byteLength;
      pending = undefined;
      writeHead(fixed.status, headers);
      return fixed.body;
    };
    (res as unknown as { writeHead: typeof writeHead }).writeHead = (status, headers) => {
      // An error status is held until its body is seen, in case it is a parse error to answer as the client's.
      if (status >= 400 && !res.headersSent) {
        pending = { status, headers: fixGrpcMessage(headers, explain) };
        return res;
      }
      return writeHead(status, fixGrpcMessage(headers, explain));
    };
    // gRPC-Web carries its trailers in the body, as a frame flagged 0x80.
    const webTrailers = (chunk: unknown): unknown =>
      chunk instanceof Uint8Array &&
      chunk[0] === 0x80 &&
      String(res.getHeader("content-type") ?? "").startsWith("application/grpc-web")
        ? fixGrpcWebTrailers(chunk, explain)
        : chunk;
    (res as unknown as { write: typeof write }).write = (chunk: unknown, ...rest: unknown[]) =>
      write(webTrailers(flush(chunk)), ...rest);
    (res as unknown as { end: typeof end }).end = (...args: unknown[]) => {
      if (pending) flush(undefined);
      if (args.length > 0 && typeof args[0] !== "function") args[0] = webTrailers(args[0]);
      return end(...args);
    };
    res.addTrailers = (headers) =>
      addTrailers(fixGrpcMessage(headers as NodeHeaders, explain) as http2.OutgoingHttpHeaders);
    handler(req, res);
  };
}

export interface ApiServer {
  port: number;
  /** Stops taking new calls, lets in-flight ones finish for up to drainMs, then closes the rest. */
  close(drainMs: number): Promise<void>;
}

export interface ApiListenOptions {
  host: string;
  port: number;
  interceptors?: Interceptor[];
  /** Mutual TLS: the server's material (reloaded as it changes) and the CA client certificates must come from. Cleartext when absent. */
  tls?: Watched<TlsMaterial>;
  /** The largest request message, after decompression: a small gzip body cannot expand into gigabytes. */
  readMaxBytes: number;
  /** Streams one connection may have open at once. */
  maxConcurrentStreams: number;
  /** The web console's built files, served on GET / and /assets/… (HTTP/1.1 as well, for browsers); none when absent. */
  consoleDir?: string;
}

/** The identity a request's client certificate names (undefined over cleartext). */
function peerOf(req: http2.Http2ServerRequest): Peer {
  const socket = req.socket as unknown as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== "function" || !socket.authorized) return { identity: undefined };
  return { identity: certificateIdentity(socket.getPeerCertificate()) ?? "" };
}

/**
 * One HTTP/2 port for gRPC, Connect and gRPC-Web alike (connect-node speaks all three, so grpcurl, grpc-js
 * clients and browsers share it): mutual TLS unless the service runs --insecure.
 */
export async function listenApi(routes: (router: ConnectRouter) => void, opts: ApiListenOptions): Promise<ApiServer> {
  // The services routed, so that an error can name a field of the method's request.
  const services: DescService[] = [];
  const recorded = (router: ConnectRouter) =>
    routes(
      new Proxy(router, {
        get: (target, prop, receiver) =>
          prop === "service"
            ? (desc: DescService, ...rest: unknown[]) => (
                services.push(desc),
                (target.service as (...a: unknown[]) => ConnectRouter)(desc, ...rest)
              )
            : Reflect.get(target, prop, receiver),
      }),
    );
  const inputOf = (path: string) => {
    const [, service, method] = path.split("/");
    return services.find((s) => s.typeName === service)?.methods.find((m) => m.name === method)?.input;
  };
  const handler = withSpecGrpcMessages(
    connectNodeAdapter({
      routes: recorded,
      interceptors: opts.interceptors ?? [],
      grpc: true,
      connect: true,
      grpcWeb: true,
      readMaxBytes: opts.readMaxBytes,
      // A misspelled enum name or field is the caller's mistake, said as INVALID_ARGUMENT naming it: never read as a
      // default (connect ignores unknown JSON by default, which made "CUTOVER_MODE_AUTOMATC" a manual cutover).
      jsonOptions: { ignoreUnknownFields: false },
      // The TLS session says who is calling; handlers read it from the context.
      contextValues: (req) =>
        createContextValues().set(PEER, opts.tls ? peerOf(req as http2.Http2ServerRequest) : { identity: undefined }),
    }),
    inputOf,
  );
  const files = opts.consoleDir ? consoleFiles(opts.consoleDir) : undefined;
  const serve = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    if (files?.(req, res)) return;
    handler(req, res);
  };
  const settings = { maxConcurrentStreams: opts.maxConcurrentStreams };
  const tls = opts.tls;
  // Browsers speak HTTP/1.1 where they cannot negotiate HTTP/2 (always on cleartext): the console needs it, and
  // Connect and gRPC-Web work over it too. gRPC itself stays HTTP/2.
  const server = tls
    ? http2.createSecureServer(
        {
          ...tls.current(),
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: "TLSv1.2",
          settings,
          allowHTTP1: Boolean(files),
        },
        serve,
      )
    : http2.createServer({ settings }, serve);
  const http1 = !tls && files ? http.createServer(serve as unknown as http.RequestListener) : undefined;
  if (tls) {
    const secure = server as http2.Http2SecureServer;
    tls.onChange((m) => secure.setSecureContext({ ...m }));
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  // A session closed by GOAWAY leaves its socket half-closed until the client closes its end; one that never does would hold close() forever.
  const sockets = new Set<Socket>();
  server.on("connection", (c: Socket) => {
    sockets.add(c);
    c.on("close", () => sockets.delete(c));
  });
  // On cleartext with the console, one port for both: a connection that opens with HTTP/2's preface goes to the HTTP/2
  // server, any other to the HTTP/1.1 one.
  const front = http1
    ? net.createServer((socket) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        // The first three bytes tell: HTTP/2's preface starts "PRI".
        let head = Buffer.alloc(0);
        const sniff = (chunk: Buffer) => {
          head = Buffer.concat([head, chunk]);
          if (head.length < 3) return;
          socket.off("data", sniff);
          socket.pause();
          socket.unshift(head);
          // HTTP/2 reads what was put back itself when it takes the socket; HTTP/1.1's parser needs the stream flowing.
          if (head.subarray(0, 3).toString("latin1") === "PRI") server.emit("connection", socket);
          else {
            http1.emit("connection", socket);
            socket.resume();
          }
        };
        socket.on("data", sniff);
      })
    : server;
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(opts.port, opts.host, () => {
      front.off("error", reject);
      resolve();
    });
  });
  return {
    port: (front.address() as AddressInfo).port,
    async close(drainMs) {
      const closed = new Promise<void>((resolve) => front.close(() => resolve()));
      if (front !== server) server.close();
      http1?.closeIdleConnections();
      // GOAWAY: clients finish what they started and take new calls elsewhere.
      for (const s of sessions) s.close();
      const timer = setTimeout(() => {
        for (const s of sessions) s.destroy();
        for (const c of sockets) c.destroy();
      }, drainMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
