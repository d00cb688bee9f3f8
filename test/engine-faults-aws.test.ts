import { join } from "node:path";
import { afterAll, describe } from "vitest";
import { RdsEmulator } from "../testing/aws-emulator/rds-emulator.js";
import { freePort } from "../src/postgres/ports.js";
import { LocalProvider } from "../src/providers/local/local-provider.js";
import { createSampleSource } from "../testing/sample.js";
import { destroyClusters } from "./helpers/clusters.js";
import { useService } from "./helpers/fixture.js";
import { localSpec } from "./helpers/migrations.js";
import { tempDir } from "./helpers/service-process.js";
import { sigkillAtEveryPhase } from "./helpers/sigkill-suite.js";
import { EMULATOR_ENV, EMULATOR_KEY, shippedIamPolicy } from "./helpers/aws.js";

/**
 * The same SIGKILL-at-every-phase suite on PROVIDER_AWS: the service drives @aws-sdk/client-rds against the local
 * RDS endpoint (real clusters behind it), is killed on reaching each phase and restarted at once. The emulator
 * lives in this process, as AWS outlives a crashed control plane.
 */
describe("on PROVIDER_AWS: the engine survives SIGKILL at every phase", () => {
  const account = tempDir("faults-aws-account");
  const clusters = new LocalProvider(join(account.dir, "account"));
  const emulator = new RdsEmulator(clusters, {
    credentials: EMULATOR_KEY,
    policy: shippedIamPolicy(),
    stepMs: 100,
    throttleFirst: 1,
  });
  emulator.addClusterParameterGroup("pgshift-logical", { "rds.logical_replication": "1" });
  const f = useService(
    "faults-aws",
    "faults-aws-sidecar",
    async () => [
      "--lease-ms",
      "2000",
      "--xds-port",
      String(await freePort()),
      "--aws-region",
      "eu-west-1",
      "--aws-endpoint",
      await emulator.listen(),
      "--aws-cluster-parameter-group",
      "pgshift-logical",
      // The emulated instances speak plaintext here; aws-migration.test.ts runs them with certificates, verified.
      "--aws-db-ssl",
      "disable",
    ],
    // The SDK's default credential chain reads these; the emulator verifies every signature against them.
    EMULATOR_ENV,
  );

  afterAll(async () => {
    await emulator.close();
    await destroyClusters(clusters);
    account.remove();
  });

  sigkillAtEveryPhase(
    f,
    () => ({
      clusters,
      source: async (name) => {
        const made = await createSampleSource(clusters, name, { rows: 500 });
        await emulator.addInstance(name, { database: `${name.replace(/-src$/, "")}-db` });
        return made;
      },
      spec: (name, mode) =>
        localSpec(`${name}-db`, `${name}-src`, `${name}-aurora`, { provider: "PROVIDER_AWS", cutover_mode: mode }),
      target: (name) => `${name}-aurora`,
      // The SQL fence (the default): the application's role has lost LOGIN on the old source.
      sourceRefusesApplication: async (name, app) =>
        !(
          await clusters
            .cluster({ id: name })
            .query<{ l: boolean }>("select rolcanlogin as l from pg_roles where rolname = $1", [app.user])
        )[0]!.l,
    }),
    120_000,
  );
});
