import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: test files run side by side, each starting its own clusters.
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default"],
  },
});
