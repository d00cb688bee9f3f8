import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { FailedPreconditionError, LeaseLostError, NotFoundError, PgshiftError } from "../../src/domain/errors.js";

describe("typed errors", () => {
  it("are told apart by class, and still pass for ConnectErrors carrying their code", () => {
    const e = new FailedPreconditionError("not now");
    expect(e instanceof FailedPreconditionError).toBe(true);
    expect(e instanceof PgshiftError).toBe(true);
    expect(e instanceof LeaseLostError).toBe(false);
    expect(e instanceof NotFoundError).toBe(false);
    expect(e instanceof ConnectError).toBe(true);
    expect(ConnectError.from(e).code).toBe(Code.FailedPrecondition);
    expect(ConnectError.from(e).rawMessage).toBe("not now");
  });
});
