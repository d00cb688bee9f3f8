/** What a source's storage holds now: what is free, of how much, and how much of it is WAL. */
export interface StorageFigures {
  freeBytes: number;
  totalBytes: number;
  /** WAL on disk (what a replica's slot keeps grows it), where known. */
  walBytes?: number;
  /** Where the figures come from, for the record (CloudWatch, the file system). */
  by: string;
}
