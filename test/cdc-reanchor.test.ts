import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { directiveFor } from "../src/cdc/directive.js";
import { create } from "@bufbuild/protobuf";
import { restoreOnTarget } from "../src/cdc/coordinator.js";
import { skipWalTo } from "../src/cdc/slots.js";
import { normalizeSpec, ProviderKind } from "../src/domain/spec.js";
import type { MigrationStateJson } from "../src/domain/state.js";
import { MigrationSpecSchema } from "../src/gen/migration/v1/migration_pb.js";
import { lsnAtLeast } from "../src/domain/lsn.js";
import { createSampleSource } from "../testing/sample.js";
import type { MigrationRow } from "../src/store/migration-repo.js";
import { useLocalProvider } from "./helpers/clusters.js";

/** pg_recvlogical from `startpos` to `endpos`, then exits: the ids of the rows it was sent. */
async function readSlot(
  port: number,
  cdc: { user: string; password: string },
  slot: string,
  startpos: string,
  endpos: string,
  file: string,
): Promise<number[]> {
  const proc = spawn(
    "pg_recvlogical",
    [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      cdc.user,
      "-d",
      "app",
      "-S",
      slot,
      "--start",
      "--no-loop",
      `--startpos=${startpos}`,
      `--endpos=${endpos}`,
      "-f",
      file,
    ],
    { env: { ...process.env, PGPASSWORD: cdc.password }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let err = "";
  proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => proc.once("exit", r));
  expect(code, err).toBe(0);
  if (!existsSync(file)) return [];
  return [...readFileSync(file, "utf8").matchAll(/table public\.items: INSERT: id\[bigint\]:(\d+)/g)].map((m) =>
    Number(m[1]),
  );
}

/**
 * A promoted Aurora cluster's WAL positions need not continue its RDS source's. Here, a target with positions of its
 * own: a separate cluster with the same schema whose WAL is far below the source's final LSN. CDC restore must not
 * try to move it past positions of another space; it creates the slot where the target is and tells consumers to
 * re-anchor there. pg_recvlogical shows what is at stake: started at its own last position from the source, a
 * consumer skips the target's first transactions; started at the directive's position, it gets every one.
 */
describe("CDC restore on a target whose WAL positions do not continue the source's", () => {
  const { provider: local, dir } = useLocalProvider("reanchor");

  it("creates the slot where the target is, moves none of its WAL, and the directive re-anchors the consumer", async () => {
    await createSampleSource(local, "rds", { rows: 10, cdc: true });
    // The source has written a good deal: its final LSN is far above a fresh cluster's positions.
    const finalLsn = await skipWalTo(local, { id: "rds" }, "0/4000000");
    const { cdc } = await createSampleSource(local, "aurora", { rows: 0, cdc: true });
    const target = local.cluster({ id: "aurora" });
    await target.query("select pg_drop_replication_slot('items_cdc')", [], "app");
    const before = await local.currentLsn({ id: "aurora" });
    expect(lsnAtLeast(before, finalLsn)).toBe(false);

    // CDC_RESTORE as the engine runs it, two slots alike recorded at the fence: one read as a consumer that ignores
    // the directive would, one as the directive says.
    const rec = (slotName: string) => ({
      slotName,
      plugin: "test_decoding",
      database: "app",
      confirmedFlushLsn: finalLsn,
      restartLsn: finalLsn,
      active: false,
      consumer: "",
      publications: ["items_pub"],
      recordedAt: new Date().toISOString(),
    });
    const state: MigrationStateJson = { finalLsn, cdcSlots: [rec("items_td"), rec("items_td_own")] };
    const notes: string[] = [];
    await restoreOnTarget({
      provider: local,
      source: { id: "rds" },
      target: { id: "aurora" },
      spec: normalizeSpec(
        create(MigrationSpecSchema, {
          databaseName: "billing-db",
          provider: ProviderKind.LOCAL,
          source: { id: "rds" },
          target: { id: "aurora" },
        }),
      ),
      state,
      note: async (m) => void notes.push(m),
    });
    expect(state.cdc).toMatchObject({ stage: "ON_TARGET", lsnDiscontinuous: true });
    expect(state.checks?.find((c) => c.name === "cdc.lsn_continuity")).toMatchObject({ status: "WARN" });
    expect(notes.join(" ")).toMatch(/do not continue rds's .* consumers re-anchor/);
    const slotAt = state.cdcSlots![0]!.targetConsistentLsn!;
    // No WAL filling toward the other space's positions: the slot sits where the target was.
    expect(lsnAtLeast(slotAt, finalLsn)).toBe(false);
    expect(lsnAtLeast(await local.currentLsn({ id: "aurora" }), finalLsn)).toBe(false);

    // The application writes on the promoted target: five rows, then (after its WAL passed the source's old final
    // position, as it will in time) one more.
    const id = async () =>
      Number(
        (
          await target.query<{ id: string }>(
            "insert into items (payload) values ('after cutover') returning id::text as id",
            [],
            "app",
          )
        )[0]!.id,
      );
    const early: number[] = [];
    for (let i = 0; i < 5; i++) early.push(await id());
    await skipWalTo(local, { id: "aurora" }, finalLsn);
    const late = await id();
    const end = await local.currentLsn({ id: "aurora" });

    // A consumer resuming at its own last position from the source skips the target's first transactions.
    const own = await readSlot(target.port, cdc!, "items_td_own", finalLsn, end, join(dir, "own.txt"));
    expect(own).toEqual([late]);

    // The directive: RESUME at the slot's position, reanchor set, and the reason says why.
    const row = { id: "m-reanchor", state } as unknown as MigrationRow;
    const d = directiveFor(row, "items_td");
    expect(d).toMatchObject({ action: "RESUME", resumeFromLsn: slotAt, reanchor: true });
    expect(d.reason).toMatch(/do not continue the other side's: start at resume_from_lsn/);
    // Started where the directive says, the consumer gets every transaction of the target, once.
    const anchored = await readSlot(target.port, cdc!, "items_td", d.resumeFromLsn, end, join(dir, "anchored.txt"));
    expect(anchored).toEqual([...early, late]);
  });
});
