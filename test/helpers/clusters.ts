import type { LocalProvider } from "../../src/providers/local/local-provider.js";

/** Stops and removes every cluster a test made under the provider (teardown; failures ignored). */
export async function destroyClusters(provider: LocalProvider): Promise<void> {
  for (const name of provider.list())
    await provider
      .cluster({ id: name })
      .destroy()
      .catch(() => {});
}
