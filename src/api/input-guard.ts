import { randomUUID } from "node:crypto";
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { observeStream } from "./stream-response.js";
import { InvalidArgumentError } from "../domain/errors.js";
import type { Logger } from "../telemetry/log.js";

/** Longest string any request field may hold: names, ids and reasons are far shorter; a megabyte is a mistake or an attack. */
export const MAX_STRING = 4096;
/** Most elements a repeated or map field may hold. */
export const MAX_ELEMENTS = 1000;
const MAX_DEPTH = 32;
const INT64_MAX = (1n << 63n) - 1n;
const LONG = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.FIXED64, ScalarType.SFIXED64, ScalarType.SINT64]);

/** A value as an error may quote it: a short prefix, never the whole of something long. */
export function quoteShort(v: string, max = 40): string {
  const shown = v.length > max ? `${v.slice(0, max)}…` : v;
  return JSON.stringify(shown);
}

function refuse(path: string, problem: string): never {
  throw new InvalidArgumentError(`${path} ${problem}`);
}

function checkScalar(path: string, type: ScalarType, v: unknown): void {
  if (type === ScalarType.STRING && typeof v === "string") {
    if (v.length > MAX_STRING)
      refuse(path, `is ${v.length} characters long; at most ${MAX_STRING} are allowed (it starts ${quoteShort(v)})`);
    if (v.includes("\u0000"))
      refuse(path, `holds a NUL character; remove it (got ${quoteShort(v.replaceAll("\u0000", "\\0"))})`);
  }
  if (LONG.has(type) && typeof v === "bigint" && (v > INT64_MAX || v < -INT64_MAX - 1n)) {
    refuse(path, `is ${v}, beyond the largest value the service stores (${INT64_MAX})`);
  }
}

function checkEnum(
  path: string,
  field: DescField & { enum: { values: { number: number }[]; typeName: string } },
  v: unknown,
): void {
  if (typeof v === "number" && !field.enum.values.some((e) => e.number === v)) {
    refuse(path, `is ${v}, which is not a value of ${field.enum.typeName}; use one of its names`);
  }
}

/**
 * Checks a request message against what the service can take, field by field, by its descriptor: strings without
 * NUL and of sane length, enum values the service knows, 64-bit integers the store can hold, bounded lists and
 * maps. Wrong input is refused with INVALID_ARGUMENT naming the field, never guessed at or passed to the store.
 */
export function checkMessage(desc: DescMessage, msg: Record<string, unknown>, path = "", depth = 0): void {
  if (depth > MAX_DEPTH) refuse(path || desc.name, `nests deeper than ${MAX_DEPTH} messages`);
  for (const f of desc.fields) {
    let v: unknown;
    if (f.oneof) {
      const o = msg[f.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (o?.case !== f.localName) continue;
      v = o.value;
    } else v = msg[f.localName];
    if (v === undefined || v === null) continue;
    const p = path ? `${path}.${f.name}` : f.name;
    switch (f.fieldKind) {
      case "scalar":
        checkScalar(p, f.scalar, v);
        break;
      case "enum":
        checkEnum(p, f, v);
        break;
      case "message":
        checkMessage(f.message, v as Record<string, unknown>, p, depth + 1);
        break;
      case "list": {
        const list = v as unknown[];
        if (list.length > MAX_ELEMENTS) refuse(p, `holds ${list.length} elements; at most ${MAX_ELEMENTS} are allowed`);
        list.forEach((x, i) => {
          const e = `${p}[${i}]`;
          if (f.listKind === "scalar") checkScalar(e, f.scalar, x);
          else if (f.listKind === "enum") checkEnum(e, f, x);
          else checkMessage(f.message, x as Record<string, unknown>, e, depth + 1);
        });
        break;
      }
      case "map": {
        const entries = Object.entries(v as Record<string, unknown>);
        if (entries.length > MAX_ELEMENTS)
          refuse(p, `holds ${entries.length} entries; at most ${MAX_ELEMENTS} are allowed`);
        for (const [k, x] of entries) {
          checkScalar(`${p} key`, ScalarType.STRING, k);
          const e = `${p}[${quoteShort(k)}]`;
          if (f.mapKind === "scalar") checkScalar(e, f.scalar, x);
          else if (f.mapKind === "enum") checkEnum(e, f, x);
          else checkMessage(f.message, x as Record<string, unknown>, e, depth + 1);
        }
        break;
      }
    }
  }
}

/**
 * Every request checked before its handler runs (see checkMessage), and every INTERNAL error logged with a
 * correlation id that the response carries (message and `x-pgshift-correlation-id` trailer): an operator can find
 * the log line, and the client never sees a stack.
 */
export function inputGuard(log: Logger): Interceptor {
  const internal = (e: unknown, method: string): ConnectError => {
    // What is not one of our errors (a driver's, a bug) is internal, whatever code it would map to.
    const ce = ConnectError.from(e);
    if (e instanceof ConnectError && ce.code !== Code.Internal) return ce;
    // connect-es calls a body that does not parse as the message INTERNAL; it is the client's mistake.
    if (e instanceof ConnectError && /^parse (binary|JSON):/.test(ce.rawMessage)) {
      return new ConnectError(
        `the request is not a valid ${method.split("/")[1]} request message: ${ce.rawMessage.slice(0, 200)}`,
        Code.InvalidArgument,
      );
    }
    const id = randomUUID();
    log.error("internal error", {
      correlationId: id,
      method,
      error: e instanceof Error ? (e.stack ?? e.message) : String(e),
    });
    return new ConnectError(
      `internal error (correlation id ${id}); the service logged it: retry, or report the id`,
      Code.Internal,
      {
        "x-pgshift-correlation-id": id,
      },
    );
  };
  return (next) => async (req) => {
    const method = `${req.service.typeName}/${req.method.name}`;
    const input = req.method.input;
    try {
      if (!req.stream) checkMessage(input, req.message as unknown as Record<string, unknown>);
      else {
        const source = req.message;
        req = {
          ...req,
          message: (async function* () {
            for await (const m of source) {
              checkMessage(input, m as unknown as Record<string, unknown>);
              yield m;
            }
          })(),
        };
      }
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: observeStream(res.message, { onError: (e) => internal(e, method) }) };
    } catch (e) {
      throw internal(e, method);
    }
  };
}
