/** Resolves when fn is called or the signal aborts, whichever is first; or after ms. */
export function wakeup(signal: AbortSignal, ms: number, subscribe: (fn: () => void) => () => void): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      unsubscribe();
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const unsubscribe = subscribe(done);
    signal.addEventListener("abort", done);
  });
}
