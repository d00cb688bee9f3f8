import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type pg from "pg";
import { closeIdle, connectTo, withClient } from "../src/providers/connect.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { destroyClusters } from "./helpers/clusters.js";
import { tempDir } from "./helpers/service-process.js";

/**
 * pgshift's admin connections are kept for a second after use and handed to the next caller: never with the last
 * one's session state, never one left inside a transaction or after a failure, never one its server closed.
 */
describe("admin connections reused for a moment", () => {
  const tmp = tempDir("reuse");
  const provider = new LocalProvider(`${tmp.dir}/local`);
  let config: pg.ClientConfig;

  beforeAll(async () => {
    config = (await provider.createCluster("reused")).connectionConfig("postgres");
  });
  afterAll(async () => {
    await closeIdle(config);
    await destroyClusters(provider);
    tmp.remove();
  });

  const pid = (c: pg.Client) => c.query<{ p: number }>("select pg_backend_pid() as p").then((r) => r.rows[0]!.p);
  const alive = async (p: number) => {
    const c = await connectTo("reused", config);
    try {
      return (await c.query("select 1 from pg_stat_activity where pid = $1", [p])).rowCount === 1;
    } finally {
      await c.end();
    }
  };

  it("hands the next caller the same session, reset: a setting, a temporary table and a lock do not carry over", async () => {
    const first = await withClient("reused", config, async (c) => {
      await c.query("set statement_timeout = 1234");
      await c.query("create temporary table scratch (x int)");
      await c.query("select pg_advisory_lock(42)");
      return pid(c);
    });
    const second = await withClient("reused", config, async (c) => ({
      pid: await pid(c),
      timeout: (await c.query<{ t: string }>("select current_setting('statement_timeout') as t")).rows[0]!.t,
      scratch: (await c.query("select 1 from pg_class where relname = 'scratch' and relpersistence = 't'")).rowCount,
      locks: (await c.query("select 1 from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()")).rowCount,
      path: (await c.query<{ p: string }>("select current_setting('search_path') as p")).rows[0]!.p,
    }));
    expect(second).toEqual({ pid: first, timeout: "0", scratch: 0, locks: 0, path: "pg_catalog,pg_temp" });
  });

  it("does not reuse a session left in a transaction or after a failure, and ends both", async () => {
    const inTx = await withClient("reused", config, async (c) => {
      await c.query("begin");
      return pid(c);
    });
    let failed = 0;
    await expect(
      withClient("reused", config, async (c) => {
        failed = await pid(c);
        throw new Error("the caller failed");
      }),
    ).rejects.toThrow("the caller failed");
    const next = await withClient("reused", config, pid);
    expect([inTx, failed]).not.toContain(next);
    expect(await alive(inTx)).toBe(false);
    expect(await alive(failed)).toBe(false);
  });

  it("replaces a session its server ended while it waited, and ends the idle ones after a second or on request", async () => {
    const idle = await withClient("reused", config, pid);
    const admin = await connectTo("reused", config);
    await admin.query("select pg_terminate_backend($1)", [idle]);
    await admin.end();
    await new Promise((r) => setTimeout(r, 100));
    const fresh = await withClient("reused", config, async (c) => ({
      pid: await pid(c),
      one: (await c.query("select 1")).rowCount,
    }));
    expect(fresh.pid).not.toBe(idle);
    expect(fresh.one).toBe(1);
    // Left alone, it ends after its second.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await alive(fresh.pid)).toBe(false);
    // On request (before a role it logs in as is dropped), at once.
    const parked = await withClient("reused", config, pid);
    await closeIdle(config, String(config.user));
    await new Promise((r) => setTimeout(r, 100));
    expect(await alive(parked)).toBe(false);
  });
});
