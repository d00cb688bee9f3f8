import type { Change } from "./consumer.js";

export interface StreamVerdict {
  /** Rows the stream delivered, in the order it delivered them. */
  streamed: number;
  /** Committed rows the stream never delivered. */
  lost: number;
  /** Deliveries beyond the first of the same row. */
  duplicated: number;
  /** Whether the stream's order is the commit order. */
  inOrder: boolean;
  /** Instances the stream was read from, in order, one entry per switch. */
  from: string[];
}

/**
 * Holds a stream of inserts against the rows the database committed, in
 * commit order: what "exactly once, in order" means, measured.
 */
export function verifyStream(changes: Change[], table: string, committedInOrder: string[]): StreamVerdict {
  const got = changes.filter((c) => c.table === table && c.op === "insert").map((c) => String(c.row.id));
  const seen = new Set(got);
  const from: string[] = [];
  for (const c of changes) if (from[from.length - 1] !== c.from) from.push(c.from);
  return {
    streamed: got.length,
    lost: committedInOrder.filter((id) => !seen.has(id)).length,
    duplicated: got.length - seen.size,
    inOrder: got.length === committedInOrder.length && got.every((id, i) => id === committedInOrder[i]),
    from,
  };
}
