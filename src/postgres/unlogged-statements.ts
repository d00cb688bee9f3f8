/**
 * Before a statement that carries a password, on the session that sends it: neither the statement nor its failure is
 * written to the server's log (log_statement would log it as sent; an error would log it as log_min_error_statement).
 */
export async function keepOutOfServerLog(session: { query(sql: string): Promise<unknown> }): Promise<void> {
  await session.query("set log_min_error_statement = panic");
  await session.query("set log_statement = 'none'");
}
