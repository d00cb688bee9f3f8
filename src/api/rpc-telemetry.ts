import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { observeStream } from "./stream-response.js";

/** Where each finished call is counted: the service's RPC metrics. */
export type RpcObserver = (rpc: { service: string; method: string; code: string; seconds: number }) => void;

/**
 * A server span and a duration per API call, named by OpenTelemetry's RPC conventions. The span is active while
 * the handler runs, so what the call records (an approval, a rollback) carries its trace and the step it
 * triggers links back to it. A stream is measured from its start to its end.
 */
export function rpcTelemetry(observe: () => RpcObserver | undefined): Interceptor {
  const tracer = trace.getTracer("pgshift-api");
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    const started = performance.now();
    const done = (code: Code | 0) =>
      observe()?.({
        service,
        method,
        code: code === 0 ? "OK" : (Code[code] ?? String(code)),
        seconds: (performance.now() - started) / 1000,
      });
    return tracer.startActiveSpan(
      `${service}/${method}`,
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
      async (span) => {
        try {
          const res = await next(req);
          if (!res.stream) {
            span.setAttribute("rpc.grpc.status_code", 0);
            span.end();
            done(0);
            return res;
          }
          // A stream ends when its messages do.
          return {
            ...res,
            message: observeStream(res.message, {
              onEnd: (error) => {
                const code: Code | 0 = error === undefined ? 0 : ConnectError.from(error).code;
                span.setAttribute("rpc.grpc.status_code", code);
                span.end();
                done(code);
              },
            }),
          };
        } catch (e) {
          const code = ConnectError.from(e).code;
          span.setAttribute("rpc.grpc.status_code", code);
          span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
          span.end();
          done(code);
          throw e;
        }
      },
    );
  };
}
