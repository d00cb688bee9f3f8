import { defineConfig } from "vitest/config";
import LongestFirst from "./test/sequencer.js";

/**
 * Two groups. First the suite: test files side by side, two at a time (two cores), each starting its own clusters.
 * Then, alone on the machine, the crash-inside-the-window measurements: they judge write gaps of a few hundred
 * milliseconds, which other files' clusters competing for the cores would distort (three more would not be faster:
 * the cores are busy).
 */
export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: "forks",
    sequence: { sequencer: LongestFirst },
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          include: ["test/**/*.test.ts"],
          exclude: ["test/crash-window.test.ts"],
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: { name: "alone", include: ["test/crash-window.test.ts"], maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
