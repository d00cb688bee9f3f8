import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { MigrationService } from "../src/gen/migration/v1/migration_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  cdcClient,
  grpc,
  healthClient,
  migrationClient,
  reflectionClient,
  unary,
  unaryError,
  type AnyClient,
} from "./helpers/grpc-clients.js";
import { storeClient } from "./helpers/embedded-store.js";
import { startServiceProcess, tempDir, type ServiceProcess } from "./helpers/service-process.js";

const S = grpc.status;

function spec(source: string, target: string, extra: Record<string, unknown> = {}) {
  return {
    database_name: "billing-db",
    provider: "PROVIDER_LOCAL",
    source: { id: source },
    target: { id: target },
    ...extra,
  };
}

describe("MigrationService over a real socket, with its own PostgreSQL store", () => {
  const tmp = tempDir("api");
  let svc: ServiceProcess;
  let client: AnyClient;

  beforeAll(async () => {
    // API-only: these migrations name sources that do not exist, and this test is about the API, not the engine.
    svc = await startServiceProcess(["--data-dir", tmp.dir, "--engine", "off"]);
    client = migrationClient(svc.address);
  });

  afterAll(async () => {
    client?.close();
    if (svc) await svc.stop();
    tmp.remove();
  });

  it("creates a migration in PENDING with defaults filled in and who asked recorded", async () => {
    const md = new grpc.Metadata();
    md.set("x-pgshift-actor", "alice@platform");
    const res = await unary(client, "CreateMigration", { spec: spec("src-a", "tgt-a"), request_id: "req-a" }, md);
    expect(res.created).toBe(true);
    const m = res.migration;
    expect(m.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(m.phase).toBe("PHASE_PENDING");
    expect(m.created_by).toBe("alice@platform");
    expect(m.spec.cutover_mode).toBe("CUTOVER_MODE_MANUAL");
    expect(m.spec.cdc_policy.mode).toBe("CDC_MODE_COORDINATE");
    expect(m.spec.failure_policy).toBe("FAILURE_POLICY_ROLLBACK");
    expect(m.spec.lag_policy.max_lag_bytes).toBe(String(16 * 1024 * 1024));
    expect(m.spec.lag_policy.window.seconds).toBe("60");
    expect(m.history).toHaveLength(1);
    expect(m.history[0].to).toBe("PHASE_PENDING");
    expect(m.history[0].actor).toBe("alice@platform");
  });

  it("returns the same migration for a retried request_id, and refuses the id for a different request", async () => {
    const a = await unary(client, "CreateMigration", { spec: spec("src-b", "tgt-b"), request_id: "req-b" });
    const b = await unary(client, "CreateMigration", { spec: spec("src-b", "tgt-b"), request_id: "req-b" });
    expect(b.migration.id).toBe(a.migration.id);
    expect(b.created).toBe(false);
    const err = await unaryError(client, "CreateMigration", { spec: spec("src-x", "tgt-x"), request_id: "req-b" });
    expect(err.code).toBe(S.ALREADY_EXISTS);
    expect(err.details).toContain("req-b");
  });

  it("refuses an instance that takes part in another live migration, as source or target, naming it and that migration", async () => {
    const first = await unary(client, "CreateMigration", { spec: spec("src-c", "tgt-c") });
    const err = await unaryError(client, "CreateMigration", { spec: spec("src-c", "tgt-c2") });
    expect(err.code).toBe(S.FAILED_PRECONDITION);
    expect(err.details).toContain(first.migration.id);
    expect(err.details).toContain("local:src-c (wanted as source) is the source of migration");
    const onTarget = await unaryError(client, "CreateMigration", { spec: spec("src-c3", "tgt-c") });
    expect(onTarget.code).toBe(S.FAILED_PRECONDITION);
    // Crosswise: one migration's target as another's source, and its source as another's target.
    const crossSource = await unaryError(client, "CreateMigration", { spec: spec("tgt-c", "tgt-c4") });
    expect(crossSource.details).toContain("local:tgt-c (wanted as source) is the target of migration");
    const crossTarget = await unaryError(client, "CreateMigration", { spec: spec("src-c5", "src-c") });
    expect(crossTarget.code).toBe(S.FAILED_PRECONDITION);
    expect(crossTarget.details).toContain("local:src-c (wanted as target) is the source of migration");
  });

  it("refuses wrong input field by field with INVALID_ARGUMENT, quoting at most a short prefix, and stores nothing", async () => {
    const before = (await unary(client, "ListMigrations", { page_size: 500 })).migrations.length;
    const refused = async (method: string, req: unknown, field: RegExp) => {
      const err = await unaryError(client, method, req);
      expect(err.code, `${method} ${field}`).toBe(S.INVALID_ARGUMENT);
      expect(err.details).toMatch(field);
      // Never the whole of a long value echoed back.
      expect(err.details.length).toBeLessThan(400);
      return err.details;
    };
    // An enum value the service does not know is not taken for the default.
    await refused(
      "CreateMigration",
      { spec: spec("s-enum", "t-enum", { cutover_mode: 99 }) },
      /^spec\.cutover_mode is 99, which is not a value of migration\.v1\.CutoverMode/,
    );
    await refused(
      "CreateMigration",
      { spec: spec("s-enum", "t-enum", { failure_policy: 42 }) },
      /^spec\.failure_policy is 42/,
    );
    await refused(
      "ListMigrations",
      { phases: [99] },
      /^phases\[0\] is 99, which is not a value of migration\.v1\.Phase/,
    );
    await refused(
      "ListMigrations",
      { phases: new Array(65_535).fill(1) },
      /^phases holds 65535 elements; at most 1000/,
    );
    // NUL characters never reach the store (it would answer INTERNAL).
    await refused("GetMigration", { id: "a\u0000b" }, /^id holds a NUL character/);
    await refused(
      "CreateMigration",
      { spec: spec("s-nul", "t-nul"), request_id: "r\u0000" },
      /^request_id holds a NUL character/,
    );
    await refused("RollbackMigration", { id: "x", reason: "because\u0000" }, /^reason holds a NUL character/);
    // 64-bit integers the store cannot hold.
    const watch = await new Promise<grpc.ServiceError>((res) => {
      const st = client.WatchMigration({ id: "x", after_sequence: "18446744073709551615" });
      st.on("error", res);
      st.on("data", () => {});
    });
    expect(watch.code).toBe(S.INVALID_ARGUMENT);
    expect(watch.details).toMatch(
      /^after_sequence is 18446744073709551615, beyond the largest value the service stores/,
    );
    // A megabyte where a name goes: refused, quoting forty characters of it.
    const big = await refused(
      "CreateMigration",
      { spec: { ...spec("s-big", "t-big"), database_name: "d".repeat(1 << 20) } },
      /^spec\.database_name is 1048576 characters long/,
    );
    expect(big).toContain(`"${"d".repeat(40)}…"`);
    expect((await unary(client, "ListMigrations", { page_size: 500 })).migrations.length).toBe(before);
  });

  it("answers bad requests with the right code and a message that says what to fix", async () => {
    const cases: Array<[unknown, number, RegExp]> = [
      [{}, S.INVALID_ARGUMENT, /spec is required/],
      [{ spec: spec("a", "b", { database_name: "Billing DB" }) }, S.INVALID_ARGUMENT, /database_name/],
      [{ spec: spec("a", "b", { provider: "PROVIDER_UNSPECIFIED" }) }, S.INVALID_ARGUMENT, /spec.provider is required/],
      [{ spec: spec("a", "a") }, S.INVALID_ARGUMENT, /must differ/],
      [{ spec: spec("", "b") }, S.INVALID_ARGUMENT, /spec.source.id is required/],
      [{ spec: spec("bad id!", "b") }, S.INVALID_ARGUMENT, /not a valid local cluster name/],
      [
        { spec: { ...spec("a1", "b1"), provider: "PROVIDER_AWS", source: { id: "db--1" } } },
        S.INVALID_ARGUMENT,
        /not a valid RDS identifier/,
      ],
      [
        { spec: spec("a2", "b2", { lag_policy: { window: { seconds: -5 } } }) },
        S.INVALID_ARGUMENT,
        /lag_policy.window/,
      ],
      [{ spec: spec("a3", "b3"), request_id: "x".repeat(129) }, S.INVALID_ARGUMENT, /request_id/],
      [
        { spec: spec("a5", "b5", { fence_mode: "FENCE_MODE_ROLES" }) },
        S.INVALID_ARGUMENT,
        /FENCE_MODE_ROLES is for PROVIDER_AWS/,
      ],
      [
        { spec: spec("a6", "b6", { aws: { instance_class: "db.r6g.large" } }) },
        S.INVALID_ARGUMENT,
        /spec.aws is only for PROVIDER_AWS/,
      ],
      [
        { spec: { ...spec("a7", "b7"), provider: "PROVIDER_AWS", aws: { cluster_parameter_group: "bad group!" } } },
        S.INVALID_ARGUMENT,
        /cluster_parameter_group "bad group!" is not a DB cluster parameter group name/,
      ],
      [
        { spec: { ...spec("a8", "b8"), provider: "PROVIDER_AWS", aws: { instance_class: "huge" } } },
        S.INVALID_ARGUMENT,
        /instance_class "huge"/,
      ],
    ];
    for (const [req, code, msg] of cases) {
      const err = await unaryError(client, "CreateMigration", req);
      expect(err.code, JSON.stringify(req)).toBe(code);
      expect(err.details).toMatch(msg);
    }
    expect((await unaryError(client, "GetMigration", { id: "" })).code).toBe(S.INVALID_ARGUMENT);
    const nf = await unaryError(client, "GetMigration", { id: "00000000-0000-0000-0000-000000000000" });
    expect(nf.code).toBe(S.NOT_FOUND);
    expect(nf.details).toMatch(/no migration with id/);
    expect((await unaryError(client, "ListMigrations", { page_size: 10_000 })).code).toBe(S.INVALID_ARGUMENT);
    expect((await unaryError(client, "ListMigrations", { page_token: "garbage" })).code).toBe(S.INVALID_ARGUMENT);
    const md = new grpc.Metadata();
    md.set("x-pgshift-actor", "x".repeat(300));
    await expect(unary(client, "CreateMigration", { spec: spec("a4", "b4") }, md)).rejects.toMatchObject({
      code: S.INVALID_ARGUMENT,
    });
    // Nothing above left a migration behind.
    const all = await unary(client, "ListMigrations", { page_size: 500 });
    expect(all.migrations.map((m: any) => m.spec.source.id)).not.toContain("a4");
  });

  it("RunPreflight of a source that does not exist answers NOT_FOUND, saying how to make one, and creates nothing", async () => {
    const before = (await unary(client, "ListMigrations", { page_size: 500 })).migrations.length;
    const err = await unaryError(client, "RunPreflight", { spec: spec("ghost", "ghost-tgt") });
    expect(err.code).toBe(S.NOT_FOUND);
    expect(err.details).toMatch(/no local cluster of that name/);
    expect((await unary(client, "ListMigrations", { page_size: 500 })).migrations.length).toBe(before);
    expect(
      (await unaryError(client, "DropInactiveSlot", { id: "00000000-0000-0000-0000-000000000000", slot_name: "x" }))
        .code,
    ).toBe(S.NOT_FOUND);
  });

  it("checks operator actions against the phase, records who asked, and treats a repeat as a retry", async () => {
    const m = (await unary(client, "CreateMigration", { spec: spec("act-src", "act-tgt") })).migration;
    for (const method of [
      "ApproveCutover",
      "PauseMigration",
      "AbortMigration",
      "RollbackMigration",
      "FinalizeMigration",
      "ResumeMigration",
    ]) {
      expect((await unaryError(client, method, { id: "00000000-0000-0000-0000-000000000000" })).code, method).toBe(
        S.NOT_FOUND,
      );
    }
    const fin = await unaryError(client, "FinalizeMigration", { id: m.id });
    expect(fin.code).toBe(S.FAILED_PRECONDITION);
    expect(fin.details).toMatch(/cannot finalize a migration in PENDING/);
    expect((await unaryError(client, "ResumeMigration", { id: m.id })).details).toMatch(/not paused/);
    const md = new grpc.Metadata();
    md.set("x-pgshift-actor", "bob");
    const paused = await unary(client, "PauseMigration", { id: m.id, reason: "change freeze" }, md);
    expect(paused.migration.paused).toBe(true);
    expect((await unary(client, "PauseMigration", { id: m.id })).migration.paused).toBe(true);
    const approved = await unary(client, "ApproveCutover", { id: m.id });
    expect(approved.migration.cutover_approved).toBe(true);
    await unary(client, "AbortMigration", { id: m.id, reason: "wrong source" });
    const rb = await unaryError(client, "RollbackMigration", { id: m.id });
    expect(rb.code).toBe(S.FAILED_PRECONDITION);
    expect(rb.details).toMatch(/abort was already requested/);
    const events: any[] = [];
    const stream = client.WatchMigration({ id: m.id });
    await new Promise<void>((res) => {
      stream.on("data", (d: any) => {
        events.push(d.event);
        if (events.length === 4) res();
      });
      stream.on("error", () => {});
    });
    stream.cancel();
    expect(events.map((e) => [e.type, e.actor, e.message])).toEqual([
      ["EVENT_TYPE_CREATED", "anonymous", expect.any(String)],
      ["EVENT_TYPE_OPERATOR_ACTION", "bob", "pause: change freeze"],
      ["EVENT_TYPE_OPERATOR_ACTION", "anonymous", "approve"],
      ["EVENT_TYPE_OPERATOR_ACTION", "anonymous", "abort: wrong source"],
    ]);
  });

  it("refuses PROVIDER_AWS while it is not configured, saying so", async () => {
    const err = await unaryError(client, "CreateMigration", {
      spec: { ...spec("aws-src", "aws-tgt"), provider: "PROVIDER_AWS" },
    });
    expect(err.code).toBe(S.FAILED_PRECONDITION);
    expect(err.details).toMatch(/PROVIDER_AWS is not configured/);
  });

  it("gets and lists, filtered by phase and database, page by page without gaps or repeats", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await unary(client, "CreateMigration", {
        spec: { ...spec(`list-src-${i}`, `list-tgt-${i}`), database_name: "orders-db" },
      });
      ids.push(r.migration.id);
    }
    const got = await unary(client, "GetMigration", { id: ids[2] });
    expect(got.migration.spec.source.id).toBe("list-src-2");
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await unary(client, "ListMigrations", {
        database_name: "orders-db",
        page_size: 2,
        page_token: token,
        phases: ["PHASE_PENDING"],
      });
      seen.push(...page.migrations.map((m: any) => m.id));
      token = page.next_page_token;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());
    const none = await unary(client, "ListMigrations", { database_name: "orders-db", phases: ["PHASE_COMPLETED"] });
    expect(none.migrations).toHaveLength(0);
  });

  it("watches a migration: replays from a sequence number, then streams new events as they commit", async () => {
    const created = await unary(client, "CreateMigration", { spec: spec("watch-src", "watch-tgt") });
    const id = created.migration.id;
    const stream = client.WatchMigration({ id, after_sequence: 0 });
    const received: any[] = [];
    const firstTwo = new Promise<void>((res, rej) => {
      stream.on("data", (d: any) => {
        received.push(d);
        if (received.length === 2) res();
      });
      stream.on("error", (e: grpc.ServiceError) => (e.code === S.CANCELLED ? undefined : rej(e)));
    });
    // Stand in for the engine: append a phase change to the store the service reads.
    const db = storeClient(tmp.dir);
    await db.connect();
    await new Promise((r) => setTimeout(r, 300));
    await db.query("begin");
    await db.query("update migrations set phase = 'PREFLIGHT', updated_at = now() where id = $1", [id]);
    await db.query(
      "insert into events (migration_id, type, actor, message, phase_from, phase_to) values ($1, 'PHASE_CHANGED', 'engine', 'preflight started', 'PENDING', 'PREFLIGHT')",
      [id],
    );
    await db.query("commit");
    await db.end();
    await firstTwo;
    stream.cancel();
    expect(received[0].event.type).toBe("EVENT_TYPE_CREATED");
    expect(received[0].phase).toBe("PHASE_PENDING");
    expect(received[1].event.type).toBe("EVENT_TYPE_PHASE_CHANGED");
    expect(received[1].event.transition.to).toBe("PHASE_PREFLIGHT");
    expect(received[1].phase).toBe("PHASE_PREFLIGHT");
    expect(BigInt(received[1].event.sequence)).toBeGreaterThan(BigInt(received[0].event.sequence));

    // Resuming after the first event yields only the second.
    const resumed = client.WatchMigration({ id, after_sequence: received[0].event.sequence });
    const first = await new Promise<any>((res, rej) => {
      resumed.once("data", res);
      resumed.once("error", rej);
    });
    resumed.cancel();
    expect(first.event.sequence).toBe(received[1].event.sequence);

    const nf = client.WatchMigration({ id: "00000000-0000-0000-0000-000000000000" });
    const err = await new Promise<grpc.ServiceError>((res) => {
      nf.on("error", res);
      nf.on("data", () => {});
    });
    expect(err.code).toBe(S.NOT_FOUND);
  });

  it("CdcService: a slot no migration concerns is read where it is; bad names are INVALID_ARGUMENT saying what is valid", async () => {
    const c = cdcClient(svc.address);
    const first = await new Promise<any>((res, rej) => {
      const s = c.WatchSlotDirectives({ database_name: "nobody-db", slot_name: "orders_cdc", consumer_id: "api-test" });
      s.on("data", (d: any) => {
        s.cancel();
        res(d.directive);
      });
      s.on("error", (e: grpc.ServiceError) => (e.code === S.CANCELLED ? undefined : rej(e)));
    });
    expect(first).toMatchObject({
      action: "SLOT_ACTION_KEEP_READING",
      slot_name: "orders_cdc",
      migration_id: "",
      reason: "no migration concerns this database",
    });
    for (const [req, msg] of [
      [{ database_name: "Bad_DB", slot_name: "s", consumer_id: "x" }, /database_name "Bad_DB" is not valid/],
      [
        { database_name: "ok-db", slot_name: "Bad-Slot", consumer_id: "x" },
        /slot_name "Bad-Slot" is not valid: 1 to 63 lowercase letters, digits and underscores/,
      ],
      [{ database_name: "ok-db", slot_name: "s" }, /consumer_id is required \(1 to 128 characters\)/],
    ] as const) {
      const err = await new Promise<grpc.ServiceError>((res) => {
        const s = c.WatchSlotDirectives(req);
        s.on("data", () => {});
        s.on("error", res);
      });
      expect(err.code).toBe(S.INVALID_ARGUMENT);
      expect(err.details).toMatch(msg);
    }
    c.close();
  });

  it("answers health checks: SERVING for the server and the API, NOT_FOUND for an unknown service", async () => {
    const h = healthClient(svc.address);
    expect((await unary(h, "Check", { service: "" })).status).toBe("SERVING");
    expect((await unary(h, "Check", { service: "migration.v1.MigrationService" })).status).toBe("SERVING");
    expect((await unaryError(h, "Check", { service: "nope.Service" })).code).toBe(S.NOT_FOUND);
    h.close();
  });

  for (const version of ["v1", "v1alpha"] as const) {
    it(`serves server reflection (${version}): lists MigrationService and describes it with its imports`, async () => {
      const r = reflectionClient(svc.address, version);
      const call = r.ServerReflectionInfo();
      const answers: any[] = [];
      const done = new Promise<void>((res, rej) => {
        call.on("data", (d: any) => answers.push(d));
        call.on("end", res);
        call.on("error", rej);
      });
      call.write({ list_services: "" });
      call.write({ file_containing_symbol: "migration.v1.MigrationService.CreateMigration" });
      call.write({ file_by_filename: "google/protobuf/duration.proto" });
      call.write({ file_containing_symbol: "no.such.Symbol" });
      call.end();
      await done;
      r.close();
      const names = answers[0].list_services_response.service.map((s: any) => s.name);
      expect(names).toEqual(
        expect.arrayContaining([
          "migration.v1.MigrationService",
          "migration.v1.CdcService",
          "grpc.health.v1.Health",
          "grpc.reflection.v1.ServerReflection",
        ]),
      );
      const { FileDescriptorProto } = await import("./helpers/descriptor.js");
      const files: any[] = answers[1].file_descriptor_response.file_descriptor_proto.map((b: Buffer) =>
        FileDescriptorProto.decode(b),
      );
      expect(files[0].name).toBe("migration/v1/migration.proto");
      expect(files[0].service[0].method.map((m: any) => m.name)).toContain("WatchMigration");
      expect(files.map((f: any) => f.name)).toEqual(
        expect.arrayContaining(["google/protobuf/timestamp.proto", "google/protobuf/duration.proto"]),
      );
      expect(
        (FileDescriptorProto.decode(answers[2].file_descriptor_response.file_descriptor_proto[0]) as any).name,
      ).toBe("google/protobuf/duration.proto");
      expect(answers[3].error_response.error_code).toBe(S.NOT_FOUND);
    });
  }

  it("serves the same API over the Connect and gRPC-Web protocols on the same port", async () => {
    const created = await unary(client, "CreateMigration", { spec: spec("connect-src", "connect-tgt") });
    for (const transport of [
      createConnectTransport({ baseUrl: `http://${svc.address}`, httpVersion: "2" }),
      createGrpcWebTransport({ baseUrl: `http://${svc.address}`, httpVersion: "2" }),
    ]) {
      const c = createClient(MigrationService, transport);
      const got = await c.getMigration({ id: created.migration.id });
      expect(got.migration?.spec?.source?.id).toBe("connect-src");
      await expect(c.getMigration({ id: "nope" })).rejects.toMatchObject({ code: Code.NotFound });
    }
  });

  it("keeps every migration and event across a restart (durable), and drains on SIGTERM", async () => {
    const before = await unary(client, "ListMigrations", { page_size: 500 });
    const watched = before.migrations.find((m: any) => m.spec.source.id === "watch-src");
    client.close();
    expect(await svc.stop()).toBe(0);
    svc = await startServiceProcess(["--data-dir", tmp.dir, "--engine", "off"]);
    client = migrationClient(svc.address);
    const after = await unary(client, "ListMigrations", { page_size: 500 });
    expect(after.migrations.map((m: any) => m.id)).toEqual(before.migrations.map((m: any) => m.id));
    const again = await unary(client, "GetMigration", { id: watched.id });
    expect(again.migration.history.map((h: any) => h.to)).toEqual(["PHASE_PENDING", "PHASE_PREFLIGHT"]);
    // A retried create after the restart still finds its migration.
    const retry = await unary(client, "CreateMigration", { spec: spec("src-a", "tgt-a"), request_id: "req-a" });
    expect(retry.created).toBe(false);
  });
});
