import type pg from "pg";
import { afterAll } from "vitest";
import { LocalProvider } from "../../src/providers/local/local-provider.js";
import { tempDir } from "./service-process.js";

/** Stops and removes every cluster a test made under the provider, side by side (teardown; failures ignored). */
export async function destroyClusters(provider: LocalProvider): Promise<void> {
  await Promise.all(
    provider.list().map((name) =>
      provider
        .cluster({ id: name })
        .destroy()
        .catch(() => {}),
    ),
  );
}

/**
 * For one describe block: a local provider on a folder of its own, every cluster it made destroyed and the folder
 * removed after the block.
 */
export function useLocalProvider(prefix: string): { provider: LocalProvider; dir: string } {
  const tmp = tempDir(prefix);
  const provider = new LocalProvider(tmp.dir);
  afterAll(async () => {
    await destroyClusters(provider);
    tmp.remove();
  });
  return { provider, dir: tmp.dir };
}

/** A cluster as pgshift's tooling reaches it: as its admin, or, while it is fenced, as the fence's own role. */
export function adminOf(provider: LocalProvider, id: string) {
  return {
    query: <R extends pg.QueryResultRow = pg.QueryResultRow>(
      text: string,
      params: unknown[] = [],
      database = "postgres",
    ) => provider.query<R>({ id }, text, params, database),
  };
}
