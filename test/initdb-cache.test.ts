import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import pg from "pg";
import { LocalCluster } from "../src/postgres/cluster.js";
import { tempDir } from "./helpers/service-process.js";

const metaOf = (c: LocalCluster) =>
  JSON.parse(readFileSync(join(c.dir, "cluster.json"), "utf8")) as { password: string; templatePassword?: string };

async function loginFails(c: LocalCluster, password: string): Promise<string | undefined> {
  const client = new pg.Client({ ...c.connectionConfig(), password });
  try {
    await client.connect();
    await client.end();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

/**
 * initdb runs once per set of binaries; the next clusters copy its output. A copy must not keep the superuser
 * password its catalog came with: it takes its own at its first start, even after a crash in the middle.
 */
describe("initdb's output, kept and copied", () => {
  const tmp = tempDir("initdb-cache");
  const before = process.env.PGSHIFT_CACHE_DIR;
  process.env.PGSHIFT_CACHE_DIR = join(tmp.dir, "cache");
  const clusters: LocalCluster[] = [];

  afterAll(async () => {
    await Promise.all(clusters.map((c) => c.destroy().catch(() => {})));
    if (before === undefined) delete process.env.PGSHIFT_CACHE_DIR;
    else process.env.PGSHIFT_CACHE_DIR = before;
    tmp.remove();
  });

  it("copies the first cluster's initdb output for the next, which takes a password of its own at its first start, not logged", async () => {
    const first = await LocalCluster.init({ dir: join(tmp.dir, "clusters", "first") });
    clusters.push(first);
    // Kept: one initdb output, with the password its catalog has.
    const kept = readdirSync(join(tmp.dir, "cache"));
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(tmp.dir, "cache", kept[0]!, "password"), "utf8").trim()).toBe(first.password);
    expect(metaOf(first).templatePassword).toBeUndefined();
    await first.startNew();

    const copy = await LocalCluster.init({ dir: join(tmp.dir, "clusters", "copy") });
    clusters.push(copy);
    // A copy, not a second initdb: its catalog came with the first cluster's password, recorded to be replaced.
    expect(metaOf(copy).templatePassword).toBe(first.password);
    expect(copy.password).not.toBe(first.password);
    await copy.startNew();
    expect(metaOf(copy).templatePassword).toBeUndefined();
    expect((await copy.query<{ one: number }>("select 1 as one"))[0]!.one).toBe(1);
    expect(await loginFails(copy, first.password)).toBe("28P01");
    // The first cluster is untouched by its copy's change.
    expect((await first.query<{ one: number }>("select 1 as one"))[0]!.one).toBe(1);
    expect(readFileSync(copy.logFile, "utf8")).not.toContain(copy.password);

    // A crash between the change and its record: the record still names the inherited password. The next start finds
    // it refused, keeps the cluster's own, and clears the record.
    writeFileSync(
      join(copy.dir, "cluster.json"),
      JSON.stringify({ ...metaOf(copy), templatePassword: first.password }),
    );
    const reloaded = LocalCluster.load(copy.dir)!;
    await reloaded.start();
    expect(metaOf(reloaded).templatePassword).toBeUndefined();
    expect((await reloaded.query<{ one: number }>("select 1 as one"))[0]!.one).toBe(1);
  });
});
