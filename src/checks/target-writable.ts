import type { SqlPort } from "../providers/sql.js";
import { check, type CheckResult } from "../domain/check.js";

/**
 * After routing: the target must be a writable primary, proven by a write
 * (a temporary table, so nothing of the application's is touched).
 */
export async function targetWritable(sql: SqlPort): Promise<CheckResult> {
  const writable = await sql.session(async (c) => {
    const r = await c.query<{ rec: boolean }>("select pg_is_in_recovery() as rec");
    if (r.rows[0]!.rec) return false;
    await c.query("create temporary table pgshift_verify (x int); insert into pgshift_verify values (1)");
    return true;
  });
  return writable
    ? check("verify.target_writable", "PASS", { measured: "writable primary", threshold: "writable primary" })
    : check("verify.target_writable", "FAIL", {
        measured: "in recovery",
        threshold: "writable primary",
        message: "the target is not a writable primary",
        remedy: "roll back",
      });
}
