import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Seconds each file took in a fresh-clone CI run (2026-11-26, local clusters copied from initdb's cache). A fresh
 * clone has no vitest cache, so the default order is by file size; with two workers, starting the longest files first
 * (and the millisecond ones last) packs them better: about a minute less in all.
 */
const SECONDS: Record<string, number> = {
  "test/cdc.test.ts": 134,
  "test/engine-faults.test.ts": 106,
  "test/cdc-recvlogical.test.ts": 103,
  "test/routing.test.ts": 85,
  "test/engine.test.ts": 85,
  "test/engine-faults-aws.test.ts": 72,
  "test/ha.test.ts": 66,
  "test/demo.test.ts": 77,
  "test/aws-migration.test.ts": 60,
  "test/fuzz.test.ts": 50,
  "test/safety.test.ts": 46,
  "test/observability.test.ts": 33,
  "test/rollback-readiness.test.ts": 36,
  "test/realistic-schema.test.ts": 25,
  "test/package.test.ts": 25,
  "test/cli.test.ts": 25,
  "test/schema-inventory.test.ts": 6,
  "test/initdb-cache.test.ts": 4,
};
/** A file not listed yet: somewhere in the middle. */
const UNKNOWN = 20;

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const grouped = await super.sort(files);
    const weight = (f: TestSpecification) =>
      SECONDS[relative(f.project.config.root, f.moduleId)] ?? (f.moduleId.includes("/unit/") ? 0 : UNKNOWN);
    // Within a project group, longest first; projects keep the order the base sequencer gave them.
    const rank = new Map(grouped.map((f, i) => [f, i]));
    const groupOf = (f: TestSpecification) => grouped.findIndex((g) => g.project.name === f.project.name);
    return [...grouped].sort((a, b) => groupOf(a) - groupOf(b) || weight(b) - weight(a) || rank.get(a)! - rank.get(b)!);
  }
}
