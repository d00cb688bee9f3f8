/** An abort signal that follows two others, and a way to let go of them. */
export interface LinkedSignal {
  signal: AbortSignal;
  /** Detaches from the two sources; call it when the work the signal guards is over. */
  dispose(): void;
}

/**
 * Aborts when either source does. Unlike AbortSignal.any, whose composites stay registered with a long-lived source
 * (the service's shutdown signal) until the garbage collector finds them, this one is detached by dispose() the
 * moment a watch ends.
 */
export function linkedSignal(a: AbortSignal, b: AbortSignal): LinkedSignal {
  const controller = new AbortController();
  const onA = () => controller.abort(a.reason);
  const onB = () => controller.abort(b.reason);
  const dispose = () => {
    a.removeEventListener("abort", onA);
    b.removeEventListener("abort", onB);
  };
  if (a.aborted) controller.abort(a.reason);
  else if (b.aborted) controller.abort(b.reason);
  else {
    a.addEventListener("abort", onA, { once: true });
    b.addEventListener("abort", onB, { once: true });
  }
  return { signal: controller.signal, dispose };
}
