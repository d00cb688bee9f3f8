/** The constraint a statement broke when PostgreSQL refused it as a unique violation (23505), if it was one. */
export function uniqueViolation(e: unknown): string | undefined {
  const err = e as { code?: string; constraint?: string };
  return err.code === "23505" ? (err.constraint ?? "") : undefined;
}
