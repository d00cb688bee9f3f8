import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource, type AppCredentials } from "../testing/sample.js";
import { tempDir } from "./helpers/service-process.js";
import { destroyClusters } from "./helpers/clusters.js";
import { moduleOf, runUntilKilled } from "./helpers/killed-child.js";

async function connect(
  port: number,
  creds: { user: string; password: string; database: string },
  applicationName = "psql",
): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port, ...creds, application_name: applicationName });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** Runs provider.fence(name) in a child process that is SIGKILLed between the write and the rename of `file`. */
function fenceKilledAt(root: string, name: string, file: string): Promise<NodeJS.Signals | null> {
  const script = `import { LocalProvider } from ${moduleOf("src/providers/local/local-provider.ts")};
    await new LocalProvider(${JSON.stringify(root)}).fence({ id: ${JSON.stringify(name)} });`;
  return runUntilKilled(script, { PGSHIFT_FAULT_KILL_BEFORE_RENAME: file });
}

describe("the fence cannot be fooled", () => {
  const tmp = tempDir("fence");
  const root = join(tmp.dir, "local");
  const provider = new LocalProvider(root);
  let app: AppCredentials;
  let port: number;

  beforeAll(async () => {
    ({ app } = await createSampleSource(provider, "fenced", { rows: 10 }));
    port = (await provider.endpoint({ id: "fenced" })).port;
  });

  afterAll(async () => {
    await destroyClusters(provider);
    tmp.remove();
  });

  it("ends every client session, the admin role's included (a human connected as postgres), and confirms none is left", async () => {
    const c = provider.cluster({ id: "fenced" });
    const human = await connect(port, { user: c.user, password: c.password, database: "app" }, "psql");
    const application = await connect(port, app);
    await provider.fence({ id: "fenced" });
    await expect(human.query("insert into items (payload) values ('after the fence')")).rejects.toThrow();
    await expect(application.query("select 1")).rejects.toThrow();
    // The superuser's own rules no longer let it in: pgshift looks through the fence's role, and sees only itself.
    await expect(c.query("select 1")).rejects.toThrow(/pg_hba.conf rejects connection/);
    expect(await provider.intruders({ id: "fenced" })).toEqual([]);
    await provider.unfence({ id: "fenced" });
    await human.end().catch(() => {});
    await application.end().catch(() => {});
  });

  it("ends a superuser session calling itself pgshift-admin, refuses it until unfence, and spares only the sessions pgshift opened", async () => {
    const ref = { id: "fenced" };
    const c = provider.cluster(ref);
    const superuser = { user: c.user, password: c.password, database: "app" };
    const impostor = await connect(port, superuser, "pgshift-admin");
    // A session pgshift opened before the fence (as the snapshot the comparison holds) lives through it.
    let held!: () => void;
    const release = new Promise<void>((r) => (held = r));
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    const own = provider.sql(ref, "app").session(async (s) => {
      await s.query("select 1");
      opened();
      await release;
      return (await s.query<{ n: number }>("select count(*)::int as n from public.items")).rows[0]!.n;
    });
    await isOpen;
    await provider.fence(ref);
    await expect(impostor.query("insert into items (payload) values ('after the fence')")).rejects.toThrow();
    const again = await connect(port, superuser, "pgshift-admin").catch((e: Error) => e);
    expect(String((again as Error).message)).toMatch(/pg_hba.conf rejects connection .*user "postgres"/);
    held();
    expect(await own).toBeGreaterThan(0);
    // pgshift's own work goes on through the fence's role, and finds no session but its own.
    expect(await provider.fencedPosition(ref)).toMatchObject({ intruders: [] });
    // One that gets in anyway (here with the fence role's own password, as only something reading pgshift's files could) is named.
    const creds = JSON.parse(readFileSync(join(c.dir, "pgshift-fence-role.json"), "utf8")) as { password: string };
    const sneak = await connect(port, { user: "pgshift_fence", password: creds.password, database: "app" }, "sneaky");
    expect((await provider.intruders(ref)).join()).toMatch(/role pgshift_fence, application sneaky, from 127\.0\.0\.1/);
    await sneak.end();
    await provider.unfence(ref);
    const back = await connect(port, superuser, "pgshift-admin");
    await back.query("select 1");
    await back.end();
    // The fence's role went with the fence; nothing of it is left.
    expect(
      (await c.query<{ n: number }>("select count(*)::int as n from pg_roles where rolname = 'pgshift_fence'"))[0]!.n,
    ).toBe(0);
    expect(existsSync(join(c.dir, "pgshift-fence-role.json"))).toBe(false);
    await impostor.end().catch(() => {});
  });

  it("fences a pg_hba.conf that lives outside the data directory (hba_file), and unfences it byte for byte", async () => {
    const { cluster } = await createSampleSource(provider, "debian-style", { rows: 1 });
    const { app: a2 } = await createSampleSource(provider, "debian-style");
    // A Debian layout: the rules in /etc/postgresql/..., pointed at by hba_file.
    const etc = join(cluster.dir, "etc");
    mkdirSync(etc);
    const outside = join(etc, "pg_hba.conf");
    renameSync(join(cluster.dataDir, "pg_hba.conf"), outside);
    cluster.writeConfig({ hba_file: `'${outside}'` });
    await cluster.stop("fast");
    await cluster.start();
    const before = readFileSync(outside, "utf8");
    const p2 = (await provider.endpoint({ id: "debian-style" })).port;
    await provider.fence({ id: "debian-style" });
    expect(existsSync(join(cluster.dataDir, "pg_hba.conf"))).toBe(false);
    expect(readFileSync(outside, "utf8")).not.toBe(before);
    expect(await provider.isFenced({ id: "debian-style" })).toBe(true);
    const refused = await connect(p2, a2).catch((e: { message: string }) => e);
    expect(String((refused as { message: string }).message)).toMatch(/pg_hba.conf rejects connection/);
    await provider.unfence({ id: "debian-style" });
    expect(readFileSync(outside, "utf8")).toBe(before);
    const ok = await connect(p2, a2);
    await ok.end();
  });

  for (const file of ["pg_hba.conf.before-fence", "pg_hba.conf"]) {
    it(`a fence killed between the write and the rename of ${file} leaves a whole file, and unfences to the byte-identical original`, async () => {
      const hbaPath = provider.cluster({ id: "fenced" }).hbaFile;
      const original = readFileSync(hbaPath, "utf8");
      expect(await fenceKilledAt(root, "fenced", file)).toBe("SIGKILL");
      // Either the old content or the new, never a torn one; the temporary file is all that is left behind.
      expect(readFileSync(hbaPath, "utf8")).toBe(original);
      expect(
        readdirSync(provider.cluster({ id: "fenced" }).dataDir).some(
          (f) => f.startsWith("pg_hba.conf") && f !== "pg_hba.conf" && !f.includes("pgshift-tmp"),
        ),
      ).toBe(false);
      // The engine retries the fence after a crash, then (say) falls back and unfences.
      await provider.fence({ id: "fenced" });
      expect(await provider.isFenced({ id: "fenced" })).toBe(true);
      await provider.unfence({ id: "fenced" });
      expect(readFileSync(hbaPath, "utf8")).toBe(original);
      expect(await provider.isFenced({ id: "fenced" })).toBe(false);
      (await connect(port, app)).end();
    });
  }

  it("puts no password on a command line: pg_basebackup's /proc/PID/cmdline while it copies", async () => {
    const src = provider.cluster({ id: "fenced" });
    const seen: string[] = [];
    let copying = true;
    const watch = (async () => {
      while (copying) {
        for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
          try {
            const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
            if (cmd.includes("pg_basebackup")) seen.push(cmd);
          } catch {
            // gone meanwhile
          }
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await provider.createReplica({ id: "fenced" }, { id: "fenced-copy" }, "m-secret");
    copying = false;
    await watch;
    expect(seen.length).toBeGreaterThan(0);
    for (const cmd of seen) expect(cmd).not.toContain(src.password);
    expect(seen[0]).toMatch(/host='127.0.0.1'/);
    // The replica still streams: its own connection got the password another way.
    await new Promise((r) => setTimeout(r, 500));
    expect((await provider.replicationStatus({ id: "fenced" }, { id: "fenced-copy" })).state).toBe("streaming");
    await provider.deleteReplica({ id: "fenced" }, { id: "fenced-copy" }, "m-secret");
  });
});
