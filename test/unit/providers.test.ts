import { describe, expect, it } from "vitest";
import { lsnAtLeast, lsnDiff, lsnFromBigInt, lsnToBigInt } from "../../src/domain/lsn.js";
import { fenceHba, isFencedHba, unfenceHba } from "../../src/providers/local/fence.js";
import { checkSameMajor } from "../../src/providers/local/local-provider.js";

describe("LSN arithmetic", () => {
  it("parses, prints and compares WAL positions", () => {
    expect(lsnToBigInt("0/3000148")).toBe(0x3000148n);
    expect(lsnToBigInt("1/0")).toBe(1n << 32n);
    expect(lsnFromBigInt(lsnToBigInt("16/B374D848"))).toBe("16/B374D848");
    expect(lsnDiff("1/10", "0/FFFFFFF0")).toBe(0x20n);
    expect(lsnAtLeast("0/10", "0/10")).toBe(true);
    expect(lsnAtLeast("0/F", "0/10")).toBe(false);
    expect(() => lsnToBigInt("nope")).toThrow(/not a WAL position/);
  });
});

describe("pg_hba fencing", () => {
  const original =
    "# comment\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n";
  it("puts reject rules first, admitting only the admin role, and is idempotent", () => {
    const fenced = fenceHba(original, "postgres");
    expect(isFencedHba(fenced)).toBe(true);
    expect(fenceHba(fenced, "postgres")).toBe(fenced);
    const lines = fenced.split("\n");
    expect(lines.indexOf('host all "postgres" 127.0.0.1/32 scram-sha-256')).toBeLessThan(
      lines.indexOf("host all all all reject"),
    );
    expect(lines.indexOf("host all all all reject")).toBeLessThan(
      lines.indexOf("host all all 127.0.0.1/32 scram-sha-256"),
    );
  });
  it("unfences back to the exact original", () => {
    expect(unfenceHba(fenceHba(original, "admin"))).toBe(original);
    expect(unfenceHba(original)).toBe(original);
  });
});

describe("major version check", () => {
  it("refuses a source whose major differs from the binaries', naming both", () => {
    expect(() => checkSameMajor("billing", 16, 15)).toThrow(/PostgreSQL 16 but the binaries here are PostgreSQL 15/);
    expect(() => checkSameMajor("billing", 15, 15)).not.toThrow();
  });
});
