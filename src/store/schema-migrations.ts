import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";

/**
 * Our own schema's history. Append only: a released migration is never edited,
 * a change is a new entry.
 */
const migrations: Record<string, Migration> = {
  "0001_initial": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("migrations")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("request_id", "text")
        .addColumn("database_name", "text", (c) => c.notNull())
        .addColumn("provider", "text", (c) => c.notNull())
        .addColumn("source_key", "text", (c) => c.notNull())
        .addColumn("target_key", "text", (c) => c.notNull())
        .addColumn("spec", "jsonb", (c) => c.notNull())
        .addColumn("phase", "text", (c) => c.notNull())
        .addColumn("paused", "boolean", (c) => c.notNull().defaultTo(false))
        .addColumn("cutover_approved", "boolean", (c) => c.notNull().defaultTo(false))
        .addColumn("state", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn("created_by", "text", (c) => c.notNull())
        .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn("version", "integer", (c) => c.notNull().defaultTo(1))
        .execute();
      await sql`create unique index migrations_request_id on migrations (request_id) where request_id is not null`.execute(
        db,
      );
      // The database itself refuses a second active migration of one source or onto one target.
      const active = sql.raw(`phase not in ('FINALIZED','ROLLED_BACK','ABORTED','FAILED')`);
      await sql`create unique index migrations_active_source on migrations (source_key) where ${active}`.execute(db);
      await sql`create unique index migrations_active_target on migrations (target_key) where ${active}`.execute(db);
      await sql`create index migrations_list on migrations (created_at desc, id desc)`.execute(db);
      await sql`create index migrations_database on migrations (database_name)`.execute(db);

      await db.schema
        .createTable("events")
        .addColumn("seq", "bigserial", (c) => c.primaryKey())
        .addColumn("migration_id", "text", (c) => c.notNull().references("migrations.id"))
        .addColumn("type", "text", (c) => c.notNull())
        .addColumn("actor", "text", (c) => c.notNull())
        .addColumn("message", "text", (c) => c.notNull().defaultTo(""))
        .addColumn("phase_from", "text")
        .addColumn("phase_to", "text")
        .addColumn("payload", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`clock_timestamp()`))
        .execute();
      await sql`create index events_by_migration on events (migration_id, seq)`.execute(db);
      // The event log is append only, whoever writes to it.
      await sql`create function events_append_only() returns trigger language plpgsql as $$
        begin raise exception 'events are append only'; end $$`.execute(db);
      await sql`create trigger events_no_update before update or delete on events
        for each row execute function events_append_only()`.execute(db);
      // Every replica of the service learns of new events through the store itself.
      await sql`create function events_notify() returns trigger language plpgsql as $$
        begin perform pg_notify('pgshift_events', new.migration_id || ' ' || new.seq); return null; end $$`.execute(db);
      await sql`create trigger events_notify after insert on events
        for each row execute function events_notify()`.execute(db);

      await db.schema
        .createTable("leases")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("holder", "text", (c) => c.notNull())
        .addColumn("token", "bigint", (c) => c.notNull())
        .addColumn("expires_at", "timestamptz", (c) => c.notNull())
        .execute();
    },
  },
  "0002_engine": {
    async up(db: Kysely<any>) {
      // What an operator asked for that the engine has yet to carry out: abort, rollback, finalize.
      await db.schema.alterTable("migrations").addColumn("requested_action", "text").execute();
      await db.schema
        .createTable("routes")
        .addColumn("database_name", "text", (c) => c.primaryKey())
        .addColumn("host", "text", (c) => c.notNull())
        .addColumn("port", "integer", (c) => c.notNull())
        // Increases with every change; the xDS version proxies ACK.
        .addColumn("version", "bigint", (c) => c.notNull())
        .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await sql`create function routes_notify() returns trigger language plpgsql as $$
        begin perform pg_notify('pgshift_routes', new.database_name || ' ' || new.version); return null; end $$`.execute(
        db,
      );
      await sql`create trigger routes_notify after insert or update on routes
        for each row execute function routes_notify()`.execute(db);
    },
  },
  "0003_xds": {
    async up(db: Kysely<any>) {
      // The port each database's listener takes on every sidecar: stable for the database's life.
      await db.schema.alterTable("routes").addColumn("listener_port", "integer").execute();
      await sql`update routes set listener_port = 15432 + (select count(*) from routes r2 where r2.database_name < routes.database_name)`.execute(
        db,
      );
      await sql`alter table routes alter column listener_port set not null`.execute(db);
      await sql`create unique index routes_listener_port on routes (listener_port)`.execute(db);
      // What each proxy applied, per database, whichever replica it is connected to.
      await db.schema
        .createTable("proxy_status")
        .addColumn("node_id", "text", (c) => c.notNull())
        .addColumn("database_name", "text", (c) => c.notNull())
        .addColumn("replica_id", "text", (c) => c.notNull())
        .addColumn("connected", "boolean", (c) => c.notNull())
        .addColumn("acked_version", "bigint")
        .addColumn("nacked_version", "bigint")
        .addColumn("nack_message", "text")
        .addColumn("last_seen", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint("proxy_status_pk", ["node_id", "database_name"])
        .execute();
    },
  },
  "0004_cdc_watchers": {
    async up(db: Kysely<any>) {
      // CDC consumers watching their directives, whichever replica serves the watch.
      await db.schema
        .createTable("cdc_watchers")
        .addColumn("database_name", "text", (c) => c.notNull())
        .addColumn("slot_name", "text", (c) => c.notNull())
        .addColumn("consumer_id", "text", (c) => c.notNull())
        .addColumn("replica_id", "text", (c) => c.notNull())
        .addColumn("last_seen", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addPrimaryKeyConstraint("cdc_watchers_pk", ["database_name", "slot_name", "consumer_id"])
        .execute();
    },
  },
  "0005_instance_claims": {
    async up(db: Kysely<any>) {
      // Every instance a live migration uses, as source or target: one key, so no instance is both one migration's
      // source and another's target (a COMPLETED migration still owns both sides: it can roll back).
      await db.schema
        .createTable("instance_claims")
        .addColumn("instance_key", "text", (c) => c.primaryKey())
        .addColumn("migration_id", "text", (c) => c.notNull())
        .addColumn("role", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("instance_claims_migration").on("instance_claims").column("migration_id").execute();
      await sql`insert into instance_claims (instance_key, migration_id, role)
                select source_key, id, 'source' from migrations where phase not in ('FINALIZED', 'ROLLED_BACK', 'ABORTED', 'FAILED')
                union all
                select target_key, id, 'target' from migrations where phase not in ('FINALIZED', 'ROLLED_BACK', 'ABORTED', 'FAILED')
                on conflict do nothing`.execute(db);
    },
  },
  "0006_databases": {
    async up(db: Kysely<any>) {
      // The inventory authorization stands on: which logical database each instance serves, and whose it is.
      await db.schema
        .createTable("databases")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("provider", "text", (c) => c.notNull())
        .addColumn("instances", "jsonb", (c) => c.notNull())
        .addColumn("team", "text", (c) => c.notNull())
        .addColumn("labels", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn("registered_by", "text", (c) => c.notNull())
        .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema.createIndex("databases_team").on("databases").columns(["team", "name"]).execute();
      // One key per instance: the store itself refuses an instance registered to two databases.
      await db.schema
        .createTable("database_instances")
        .addColumn("instance_key", "text", (c) => c.primaryKey())
        .addColumn("database_name", "text", (c) => c.notNull().references("databases.name"))
        .execute();
      await db.schema
        .createIndex("database_instances_database")
        .on("database_instances")
        .column("database_name")
        .execute();
    },
  },
  "0007_proxy_status_identity": {
    async up(db: Kysely<any>) {
      // ACK state is kept under the certificate's identity and the node id together: one identity's proxy can never
      // stand in another's, even were a node id reused.
      await sql`alter table proxy_status add column identity text not null default ''`.execute(db);
      await sql`alter table proxy_status drop constraint proxy_status_pk`.execute(db);
      await sql`alter table proxy_status add constraint proxy_status_pk primary key (identity, node_id, database_name)`.execute(
        db,
      );
    },
  },
  "0008_campaigns": {
    async up(db: Kysely<any>) {
      // Fleet campaigns: the campaign's own progress; where its migrations stand is read from them.
      await db.schema
        .createTable("campaigns")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("request_id", "text")
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("spec", "jsonb", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("pause_reason", "text", (c) => c.notNull().defaultTo(""))
        .addColumn("approvals", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn("failures_seen", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("rollbacks_seen", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("teams", "jsonb", (c) => c.notNull())
        .addColumn("created_by", "text", (c) => c.notNull())
        .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await sql`create unique index campaigns_request_id on campaigns (request_id) where request_id is not null`.execute(
        db,
      );
      await db.schema.createIndex("campaigns_created").on("campaigns").columns(["created_at", "id"]).execute();
      await db.schema
        .createTable("campaign_items")
        .addColumn("campaign_id", "text", (c) => c.notNull().references("campaigns.id"))
        .addColumn("database_name", "text", (c) => c.notNull())
        .addColumn("ord", "integer", (c) => c.notNull())
        .addColumn("wave", "integer", (c) => c.notNull())
        .addColumn("team", "text", (c) => c.notNull())
        .addColumn("spec", "jsonb", (c) => c.notNull())
        .addColumn("migration_id", "text")
        .addColumn("active", "boolean", (c) => c.notNull().defaultTo(true))
        .addPrimaryKeyConstraint("campaign_items_pk", ["campaign_id", "database_name"])
        .execute();
      // A database is in one running or paused campaign at most: the store refuses a second.
      await sql`create unique index campaign_items_active on campaign_items (database_name) where active`.execute(db);
      await db.schema.createIndex("campaign_items_migration").on("campaign_items").column("migration_id").execute();
      await db.schema
        .createTable("campaign_events")
        .addColumn("seq", "bigserial", (c) => c.primaryKey())
        .addColumn("campaign_id", "text", (c) => c.notNull().references("campaigns.id"))
        .addColumn("type", "text", (c) => c.notNull())
        .addColumn("actor", "text", (c) => c.notNull())
        .addColumn("message", "text", (c) => c.notNull())
        .addColumn("payload", "jsonb", (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createIndex("campaign_events_campaign")
        .on("campaign_events")
        .columns(["campaign_id", "seq"])
        .execute();
    },
  },
  "0009_notifications": {
    async up(db: Kysely<any>) {
      // An outbox: one row per event and webhook, so a notification is queued once whichever replica looks, and its
      // delivery is retried from the store, never from the engine's path.
      await db.schema
        .createTable("notifications")
        .addColumn("id", "bigserial", (c) => c.primaryKey())
        .addColumn("source", "text", (c) => c.notNull())
        .addColumn("event_seq", "bigint", (c) => c.notNull())
        .addColumn("hook_key", "text", (c) => c.notNull())
        .addColumn("team", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("migration_id", "text")
        .addColumn("campaign_id", "text")
        .addColumn("notice", "jsonb", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull().defaultTo("pending"))
        .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("next_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn("last_error", "text")
        .addColumn("done_at", "timestamptz")
        .addColumn("recorded", "boolean", (c) => c.notNull().defaultTo(false))
        .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint("notifications_once", ["source", "event_seq", "hook_key"])
        .execute();
      await sql`create index notifications_due on notifications (next_at) where status = 'pending'`.execute(db);
      await sql`create index notifications_unrecorded on notifications (id) where status <> 'pending' and not recorded`.execute(
        db,
      );
      await db.schema
        .createTable("notifier_cursors")
        .addColumn("source", "text", (c) => c.primaryKey())
        .addColumn("seq", "bigint", (c) => c.notNull())
        .execute();
    },
  },
};

export const schemaMigrations: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
