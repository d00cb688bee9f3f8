/**
 * A streamed response's messages, unchanged, with hooks on how they end: onError may replace an error before it
 * reaches the client, and onEnd runs once however the stream ends (completed, failed, or dropped by the client).
 */
export function observeStream<T>(
  messages: AsyncIterable<T>,
  hooks: { onError?: (e: unknown) => unknown; onEnd?: (error: unknown) => void },
): AsyncIterable<T> {
  return (async function* () {
    let error: unknown;
    try {
      yield* messages;
    } catch (e) {
      error = e;
      throw hooks.onError ? hooks.onError(e) : e;
    } finally {
      hooks.onEnd?.(error);
    }
  })();
}
