/**
 * The small part of a SQL connection that checks, CDC and replication steps
 * need, in the spirit of kysely's own `PostgresPool`: the provider decides
 * how a connection is opened (credentials, TLS, IAM tokens), callers only run
 * statements. Nothing outside providers/ sees a driver type.
 */
export interface SqlResult<R> {
  rows: R[];
  rowCount: number | null;
}

export interface Sql {
  query<R extends object = Record<string, unknown>>(text: string, params?: unknown[]): Promise<SqlResult<R>>;
}

/** SQL against one database of one instance, as its admin. */
export interface SqlPort extends Sql {
  /** Several statements on one connection, closed when fn settles (for waits and session state). */
  session<T>(fn: (s: Sql) => Promise<T>): Promise<T>;
}

/** How another PostgreSQL server reaches an instance (CREATE SUBSCRIPTION's connection). */
export interface PeerConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** libpq's sslmode for the peer's connection (absent: libpq's default). */
  sslmode?: "disable" | "require";
}
