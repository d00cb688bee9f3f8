import { PassThrough } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { checkMessage, inputGuard, quoteShort } from "../../src/api/input-guard.js";
import { GetMigrationRequestSchema, MigrationService } from "../../src/gen/migration/v1/migration_pb.js";
import { createLogger } from "../../src/telemetry/log.js";

describe("the API's input guard", () => {
  it("an INTERNAL error is logged with a correlation id that the response carries; the cause stays in the log", async () => {
    const out = new PassThrough();
    const lines: string[] = [];
    out.on("data", (d: Buffer) => lines.push(...d.toString().split("\n").filter(Boolean)));
    const guard = inputGuard(createLogger("info", {}, out));
    const method = MigrationService.method.getMigration;
    const req = {
      stream: false,
      service: MigrationService,
      method,
      message: create(GetMigrationRequestSchema, { id: "m-1" }),
    };
    const call = guard(async () => {
      throw new Error('relation "secret_table" does not exist');
    });
    const err = await call(req as never).catch((e: unknown) => e as ConnectError);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    const id = (err as ConnectError).metadata.get("x-pgshift-correlation-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((err as ConnectError).rawMessage).toBe(
      `internal error (correlation id ${id}); the service logged it: retry, or report the id`,
    );
    expect((err as ConnectError).rawMessage).not.toContain("secret_table");
    await new Promise((r) => setImmediate(r));
    const logged = lines.map((l) => JSON.parse(l)).find((l) => l.correlationId === id);
    expect(logged).toMatchObject({ level: "error", method: "migration.v1.MigrationService/GetMigration" });
    expect(logged.error).toContain("secret_table");
  });

  it("passes codes other than INTERNAL through as they are, and refuses bad input before the handler runs", async () => {
    const guard = inputGuard(createLogger("error", {}, new PassThrough()));
    const method = MigrationService.method.getMigration;
    const ran: string[] = [];
    const call = guard(async (r) => {
      ran.push((r.message as unknown as { id: string }).id);
      throw new ConnectError("no migration", Code.NotFound);
    });
    const ok = {
      stream: false,
      service: MigrationService,
      method,
      message: create(GetMigrationRequestSchema, { id: "m-1" }),
    };
    expect(await call(ok as never).catch((e: ConnectError) => e.code)).toBe(Code.NotFound);
    const bad = { ...ok, message: create(GetMigrationRequestSchema, { id: "m\u00001" }) };
    expect(await call(bad as never).catch((e: ConnectError) => e.code)).toBe(Code.InvalidArgument);
    // The handler ran for the good request only.
    expect(ran).toEqual(["m-1"]);
  });

  it("quotes a short prefix of long values", () => {
    expect(quoteShort("abc")).toBe('"abc"');
    expect(quoteShort("x".repeat(100), 5)).toBe('"xxxxx…"');
    const err = (() => {
      try {
        checkMessage(GetMigrationRequestSchema, { id: "y".repeat(5000) });
      } catch (e) {
        return e as ConnectError;
      }
    })();
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toBe(
      `id is 5000 characters long; at most 4096 are allowed (it starts "${"y".repeat(40)}…")`,
    );
  });
});
