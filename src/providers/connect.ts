import { createHash } from "node:crypto";
import pg from "pg";
import type { Sql, SqlPort } from "./sql.js";
import { CredentialsRejectedError, InstanceUnreachableError } from "./errors.js";

/**
 * The backend PIDs of the sessions this process has open, by server: how a fence recognises pgshift's own sessions
 * (an application_name, a role or an address any client can share; a PID it opened, no client can claim).
 */
const ours = new Map<string, Set<number>>();
/** Connections this process is opening, by server: their backends exist before their PIDs are known here. */
const opening = new Map<string, Set<Promise<unknown>>>();

function serverKey(config: pg.ClientConfig): string {
  return `${config.host ?? ""}:${config.port ?? 5432}`;
}

/** The PIDs of this process's open sessions on the server a config reaches. */
export function ownSessions(config: pg.ClientConfig): number[] {
  return [...(ours.get(serverKey(config)) ?? [])];
}

/**
 * Waits for the connections to that server this process had begun to open: a backend seen in pg_stat_activity
 * before its connection completed here may be one of ours, known only once it has.
 */
export async function connectsSettled(config: pg.ClientConfig): Promise<void> {
  await Promise.allSettled([...(opening.get(serverKey(config)) ?? [])]);
}

function remember(config: pg.ClientConfig, client: pg.Client): void {
  const pid = (client as unknown as { processID?: number }).processID;
  if (!pid) return;
  const key = serverKey(config);
  let set = ours.get(key);
  if (!set) ours.set(key, (set = new Set()));
  set.add(pid);
  const forget = () => {
    set.delete(pid);
    if (set.size === 0 && ours.get(key) === set) ours.delete(key);
  };
  client.once("end", forget);
}

/** Opens a connection, turning connection failures into errors that name the instance and the fix. */
export async function connectTo(instance: string, config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client({
    ...config,
    connectionTimeoutMillis: config.connectionTimeoutMillis ?? 5_000,
    application_name: "pgshift-admin",
    // A superuser session inside a tenant's database must not resolve a name to an object a tenant role created
    // (a public.setval, say): only the catalog, then our own temporary objects. Literals mean what they say.
    options: "-c search_path=pg_catalog,pg_temp -c standard_conforming_strings=on",
  });
  // A server that goes away later must not crash the process through an unhandled 'error'.
  client.on("error", () => {});
  try {
    const key = serverKey(config);
    const connecting = client.connect();
    let set = opening.get(key);
    if (!set) opening.set(key, (set = new Set()));
    set.add(connecting);
    try {
      await connecting;
    } finally {
      set.delete(connecting);
      if (set.size === 0 && opening.get(key) === set) opening.delete(key);
    }
    remember(config, client);
    return client;
  } catch (e) {
    await client.end().catch(() => {});
    const code = (e as { code?: string }).code;
    if (code === "28P01" || code === "28000") throw new CredentialsRejectedError(instance, String(config.user), e);
    throw new InstanceUnreachableError(instance, `${config.host}:${config.port}`, e);
  }
}

/** Runs fn on a short-lived connection. */
export async function withClient<T>(
  instance: string,
  config: pg.ClientConfig,
  fn: (c: pg.Client) => Promise<T>,
): Promise<T> {
  const key = reuseKey(config);
  const client = (key && takeIdle(key)) || (await connectTo(instance, config));
  let ok = false;
  try {
    const result = await fn(client);
    ok = true;
    return result;
  } finally {
    if (ok && key) await park(key, client);
    else await client.end().catch(() => {});
  }
}

/**
 * Connections kept for a moment after use. A new one costs a TCP and SCRAM handshake (6 ms here) and the cutover's
 * steps make theirs one after another with writes stopped: the next step takes the last one's. Each is reset
 * (DISCARD ALL: settings, temporary tables, listens, advisory locks) before it waits, ended if it cannot be (a
 * transaction left open), after IDLE_MS unused, or when the server closes it. Still ours while it waits: the fence
 * spares it like any session pgshift opened.
 */
const IDLE_MS = 1_000;
const MAX_IDLE = 2;
const SEP = "\u0000";

interface Parked {
  client: pg.Client;
  /** Takes it out of waiting: its timer and its listener gone. */
  unpark(): void;
}

const idle = new Map<string, Parked[]>();

function reuseKey(config: pg.ClientConfig): string | undefined {
  // A password minted per call (an IAM token) is never the same twice: nothing to reuse.
  if (typeof config.password !== "string") return undefined;
  const secret = createHash("sha256").update(config.password).digest("base64url");
  return [serverKey(config), config.database ?? "", config.user ?? "", secret].join(SEP);
}

function takeIdle(key: string): pg.Client | undefined {
  const parked = idle.get(key)?.pop();
  parked?.unpark();
  return parked?.client;
}

async function park(key: string, client: pg.Client): Promise<void> {
  try {
    if ((idle.get(key)?.length ?? 0) >= MAX_IDLE) throw new Error("enough idle connections");
    await client.query("discard all");
  } catch {
    await client.end().catch(() => {});
    return;
  }
  const list = idle.get(key) ?? [];
  idle.set(key, list);
  const leave = () => {
    const i = list.findIndex((p) => p.client === client);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0 && idle.get(key) === list) idle.delete(key);
  };
  const timer = setTimeout(() => {
    leave();
    client.off("end", leave);
    client.off("error", leave);
    void client.end().catch(() => {});
  }, IDLE_MS);
  timer.unref();
  // A server that closes it (a restart, a terminated backend) takes it out of waiting at once.
  client.once("end", leave);
  client.once("error", leave);
  list.push({
    client,
    unpark: () => {
      clearTimeout(timer);
      client.off("end", leave);
      client.off("error", leave);
    },
  });
}

/** Ends the idle connections to a server (as one user, when named): before a role they log in as is dropped. */
export async function closeIdle(config: pg.ClientConfig, user?: string): Promise<void> {
  const server = serverKey(config);
  const ending: Promise<void>[] = [];
  for (const [key, list] of idle) {
    const [host, , role] = key.split(SEP);
    if (host !== server || (user !== undefined && role !== user)) continue;
    idle.delete(key);
    for (const p of list.splice(0)) {
      p.unpark();
      ending.push(p.client.end().catch(() => {}));
    }
  }
  await Promise.all(ending);
}

/** A SqlPort over short-lived connections made from config (one per query or session). */
export function sqlPort(instance: string, config: pg.ClientConfig): SqlPort {
  const session = <T>(fn: (s: Sql) => Promise<T>) =>
    withClient(instance, config, (c) =>
      fn({
        query: async <R extends object>(text: string, params?: unknown[]) =>
          c.query<R & pg.QueryResultRow>(text, params),
      }),
    );
  return { session, query: (text, params) => session((s) => s.query(text, params)) };
}

/** A SQL string literal, quoted by the driver's own rules (E'' when it holds a backslash), for statements that take no parameters. */
export function sqlLiteral(value: string): string {
  return pg.escapeLiteral(value);
}
