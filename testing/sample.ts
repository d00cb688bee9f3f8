import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LocalCluster } from "../src/postgres/cluster.js";
import type { LocalProvider } from "../src/providers/local/local-provider.js";

/** How an application reaches the sample database: an ordinary role, not a superuser, so fencing applies to it. */
export interface AppCredentials {
  user: string;
  password: string;
  database: string;
}

/** A change stream on the sample: a replication role, a publication of items and a pgoutput slot. */
export interface CdcSetup extends AppCredentials {
  slot: string;
  publication: string;
}

export interface SampleSource {
  cluster: LocalCluster;
  app: AppCredentials;
  cdc?: CdcSetup;
}

/**
 * A source cluster with an application database: a table of numbered rows
 * that the write load appends to, and a role the application connects as.
 * Idempotent: a sample that exists is returned as it is.
 */
export async function createSampleSource(
  provider: LocalProvider,
  name: string,
  opts: { rows?: number; cdc?: boolean } = {},
): Promise<SampleSource> {
  const cluster = await provider.createCluster(name);
  const credFile = join(cluster.dir, "app.json");
  const cdcFile = join(cluster.dir, "cdc.json");
  const cdc = async (): Promise<CdcSetup | undefined> => {
    if (!opts.cdc) return undefined;
    if (existsSync(cdcFile)) return JSON.parse(readFileSync(cdcFile, "utf8")) as CdcSetup;
    const c: CdcSetup = {
      user: "cdc",
      password: randomBytes(9).toString("hex"),
      database: "app",
      slot: "items_cdc",
      publication: "items_pub",
    };
    await cluster.query(`create role ${c.user} login replication password '${c.password}'`);
    await cluster.query(
      `grant select on items to ${c.user};
       create publication ${c.publication} for table items;`,
      [],
      c.database,
    );
    await cluster.query(`select pg_create_logical_replication_slot('${c.slot}', 'pgoutput')`, [], c.database);
    writeFileSync(cdcFile, JSON.stringify(c), { mode: 0o600 });
    return c;
  };
  if (existsSync(credFile))
    return { cluster, app: JSON.parse(readFileSync(credFile, "utf8")) as AppCredentials, cdc: await cdc() };
  const app: AppCredentials = { user: "app", password: randomBytes(9).toString("hex"), database: "app" };
  await cluster.query(`create role ${app.user} login password '${app.password}'`);
  await cluster.query(`create database ${app.database} owner ${app.user}`);
  await cluster.query(
    `create table items (
       id bigserial primary key,
       payload text not null,
       created_at timestamptz not null default now()
     );
     alter table items owner to ${app.user};
     alter sequence items_id_seq owner to ${app.user};
     insert into items (payload) select md5(g::text) from generate_series(1, ${Math.max(0, Math.floor(opts.rows ?? 1000))}) g;`,
    [],
    app.database,
  );
  writeFileSync(credFile, JSON.stringify(app), { mode: 0o600 });
  return { cluster, app, cdc: await cdc() };
}

export function readAppCredentials(cluster: LocalCluster): AppCredentials {
  return JSON.parse(readFileSync(join(cluster.dir, "app.json"), "utf8")) as AppCredentials;
}
