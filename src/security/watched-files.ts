import { readFile, stat } from "node:fs/promises";

/** What a watched set of files currently yields, and how to hear of a change. */
export interface Watched<T> {
  current(): T;
  /** Called with each new value that loaded cleanly. */
  onChange(listener: (value: T) => void): () => void;
  close(): void;
}

export interface WatchOptions {
  /** How often the files are looked at; certificate rotation tools replace files, they do not signal. */
  intervalMs?: number;
  /** A change that fails to load keeps the last good value; this hears why. */
  onError?: (error: Error) => void;
}

/**
 * Loads files once (failing loudly if they do not load), then re-reads them whenever one changes and swaps the value
 * in only if it loads: a half-written certificate or a policy with a typo never replaces a working one.
 */
export async function watchFiles<T>(
  paths: string[],
  load: (contents: Buffer[]) => T,
  opts: WatchOptions = {},
): Promise<Watched<T>> {
  const read = () => Promise.all(paths.map((p) => readFile(p)));
  const stamp = async () =>
    (await Promise.all(paths.map((p) => stat(p).then((s) => `${s.ino}:${s.size}:${s.mtimeMs}`)))).join("|");
  let lastStamp = await stamp();
  let lastBytes = await read();
  let value = load(lastBytes);
  const listeners = new Set<(v: T) => void>();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      const s = await stamp();
      if (s === lastStamp) return;
      lastStamp = s;
      const bytes = await read();
      if (bytes.every((b, i) => b.equals(lastBytes[i]!))) return;
      const next = load(bytes);
      lastBytes = bytes;
      value = next;
      for (const l of listeners) l(next);
    })()
      .catch((e: unknown) => opts.onError?.(e instanceof Error ? e : new Error(String(e))))
      .finally(() => (busy = false));
  }, opts.intervalMs ?? 2_000);
  timer.unref();
  return {
    current: () => value,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close: () => clearInterval(timer),
  };
}
