import { describe, expect, it } from "vitest";
import { createSampleSource } from "../testing/sample.js";
import { prepareReverseReplication, probeReversePath } from "../src/replication/reverse.js";
import { readSchemaInventory } from "../src/checks/schema-inventory.js";
import { useLocalProvider } from "./helpers/clusters.js";

/**
 * Before cutover the source connects to its replica exactly as reverse replication will after promotion, so that a
 * missing path shows while the source is still the primary, not in PROMOTING with it fenced. Real clusters: the
 * replica is a hot standby, and the probe must leave nothing behind on either side.
 */
describe("the reverse-replication path, probed before cutover", () => {
  const { provider: local } = useLocalProvider("reverse-path");

  it("reaches a standby replica and leaves no subscription; a target it cannot reach is named with the error", async () => {
    await createSampleSource(local, "src", { rows: 10 });
    await local.createReplica({ id: "src" }, { id: "tgt" }, "m-probe");
    const dbs = (
      await prepareReverseReplication(local, { id: "src" }, await readSchemaInventory(local, { id: "src" }))
    ).map((p) => p.database);
    expect(dbs).toEqual(["app"]);
    const subscriptions = async () =>
      (await local.cluster({ id: "src" }).query<{ n: number }>("select count(*)::int as n from pg_subscription"))[0]!.n;

    expect(await probeReversePath(local, { id: "src" }, { id: "tgt" }, dbs)).toBeUndefined();
    expect(await subscriptions()).toBe(0);
    // Nothing was made on the replica either: no slot (it is a standby; a slot there would have been refused anyway).
    expect((await local.describe({ id: "tgt" })).slots).toEqual([]);

    // The target down: the probe says why, and still leaves nothing.
    await local.cluster({ id: "tgt" }).stop("fast");
    const error = await probeReversePath(local, { id: "src" }, { id: "tgt" }, dbs);
    expect(error).toMatch(/could not connect to the publisher/);
    expect(await subscriptions()).toBe(0);
  });
});
