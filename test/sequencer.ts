import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Seconds each file took in a fresh-clone CI run (2026-11-26). A fresh clone has no vitest cache, so the default
 * order is by file size; with two workers, starting the longest files first (and the millisecond ones last) packs
 * them better: about a minute less in all.
 */
const SECONDS: Record<string, number> = {
  "test/cdc.test.ts": 133,
  "test/engine-faults.test.ts": 110,
  "test/cdc-recvlogical.test.ts": 101,
  "test/engine-faults-aws.test.ts": 91,
  "test/ha.test.ts": 89,
  "test/engine.test.ts": 89,
  "test/routing.test.ts": 82,
  "test/demo.test.ts": 69,
  "test/aws-migration.test.ts": 62,
  "test/safety.test.ts": 45,
  "test/fuzz.test.ts": 41,
  "test/observability.test.ts": 29,
  "test/rollback-readiness.test.ts": 25,
  "test/cli.test.ts": 23,
  "test/package.test.ts": 22,
  "test/initdb-cache.test.ts": 4,
};
/** A file not listed yet: somewhere in the middle. */
const UNKNOWN = 20;

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const grouped = await super.sort(files);
    const weight = (f: TestSpecification) => SECONDS[relative(f.project.config.root, f.moduleId)] ?? (f.moduleId.includes("/unit/") ? 0 : UNKNOWN);
    // Within a project group, longest first; projects keep the order the base sequencer gave them.
    const rank = new Map(grouped.map((f, i) => [f, i]));
    const groupOf = (f: TestSpecification) => grouped.findIndex((g) => g.project.name === f.project.name);
    return [...grouped].sort((a, b) => groupOf(a) - groupOf(b) || weight(b) - weight(a) || rank.get(a)! - rank.get(b)!);
  }
}
