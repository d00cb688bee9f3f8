/**
 * What one database holds that a physical switch forward and a logical switch back treat differently from an
 * ordinary table. Names are "schema.table" as PostgreSQL prints them (quoted where they need it).
 */
export interface DatabaseInventory {
  database: string;
  /** Logged tables reverse replication can carry every change of: a primary key, a replica identity index, or FULL. */
  identified: string[];
  /** Logged tables without a usable replica identity: reverse replication carries their inserts only. */
  keyless: string[];
  /** Unlogged tables: physical replication does not carry their rows. */
  unlogged: string[];
  partitioned: string[];
  foreign: string[];
  materializedViews: string[];
  largeObjects: number;
  /** Bytes pg_largeobject takes. */
  largeObjectBytes: number;
  /** Publications and subscriptions the source already has (not pgshift's). */
  publications: string[];
  subscriptions: string[];
  eventTriggers: string[];
  /** A digest of every user table's columns: equal on both sides when neither had a schema change the other lacks. */
  fingerprint: string;
}

export interface PreparedTransaction {
  gid: string;
  database: string;
  owner: string;
  preparedAt: string;
}

export interface SchemaInventory {
  databases: DatabaseInventory[];
  prepared: PreparedTransaction[];
}

/** The schema pgshift keeps on a promoted target to record DDL statements (replication/ddl-capture.ts): not the application's. */
export const DDL_CAPTURE_SCHEMA = "pgshift_ddl";
