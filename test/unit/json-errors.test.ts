import { describe, expect, it } from "vitest";
import { explainJsonError } from "../../src/api/json-errors.js";
import { CreateMigrationRequestSchema, RunPreflightRequestSchema } from "../../src/gen/migration/v1/migration_pb.js";

describe("JSON decoding errors name the request's field", () => {
  it("an unknown enum name: the field's path, the value and the names it takes", () => {
    const m = explainJsonError(
      'cannot decode enum migration.v1.CutoverMode from JSON: "CUTOVER_MODE_AUTOMATC"',
      CreateMigrationRequestSchema,
    );
    expect(m).toBe(
      'spec.cutover_mode: "CUTOVER_MODE_AUTOMATC" is not a migration.v1.CutoverMode value; use one of CUTOVER_MODE_UNSPECIFIED, CUTOVER_MODE_MANUAL, CUTOVER_MODE_AUTOMATIC',
    );
    expect(
      explainJsonError('cannot decode enum migration.v1.CdcMode from JSON: "X"', RunPreflightRequestSchema),
    ).toMatch(/^spec\.cdc_policy\.mode: "X"/);
  });

  it("anything else, or a method it cannot place, is left as it is", () => {
    expect(
      explainJsonError(
        'cannot decode message migration.v1.MigrationSpec from JSON: key "zzz" is unknown',
        CreateMigrationRequestSchema,
      ),
    ).toBe('cannot decode message migration.v1.MigrationSpec from JSON: key "zzz" is unknown');
    expect(explainJsonError('cannot decode enum migration.v1.CutoverMode from JSON: "X"', undefined)).toBe(
      'cannot decode enum migration.v1.CutoverMode from JSON: "X"',
    );
  });
});
