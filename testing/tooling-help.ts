import type { CommandHelp } from "../src/cli/help.js";

const DATA_DIR: [string, string] = [
  "--data-dir DIR",
  "the service's data directory; clusters live under DIR/local (PGSHIFT_DATA_DIR, default ./.pgshift)",
];

/** The flags of `sample` and `load`. */
export const TOOLING_OPTIONS = {
  "data-dir": { type: "string" },
  name: { type: "string" },
  rows: { type: "string" },
  rate: { type: "string" },
  seconds: { type: "string" },
} as const;

/** Each tooling command's help; a test holds the flags to their parsers. */
export const TOOLING_HELP: Record<string, CommandHelp> = {
  demo: {
    summary: "a whole migration under a live write load and a CDC consumer, shown and verified",
    usage:
      "demo [--rollback] [--aws-emulator] [--schema sample|realistic] [--rows N] [--rate N] [--window S] [--metrics-port N] [--keep] [--console]",
    flags: [
      ["--rollback", "roll back after COMPLETED and verify nothing was lost"],
      ["--rows N", "rows in the sample source (default 20000)"],
      ["--rate N", "application writes per second (default 200)"],
      ["--window S", "the lag window in seconds (default 5)"],
      ["--metrics-port N", "serve Prometheus metrics on 127.0.0.1:N while the demo runs"],
      [
        "--aws-emulator",
        "migrate on PROVIDER_AWS: the AWS provider through @aws-sdk/client-rds against a local RDS endpoint over this machine's clusters",
      ],
      [
        "--schema sample|realistic",
        "sample: one table and a CDC consumer (default); realistic: two databases, keyless, unlogged and partitioned tables, large objects, sequences",
      ],
      ["--data-dir DIR", "where to put everything (default: a new temporary folder)"],
      ["--keep", "leave the clusters and data behind"],
      ["--console", "keep the service up at the end and print the web console's URL (Ctrl-C ends it)"],
    ],
    example: "npm run demo -- --rollback --metrics-port 9464",
  },
  sample: {
    summary: "create a sample source (a local cluster) with an application database",
    usage: "sample --name N [--rows 1000] [--data-dir DIR]",
    flags: [["--name N", "the cluster's name"], ["--rows N", "rows in the items table (default 1000)"], DATA_DIR],
    example: "npm run tooling -- sample --name billing --rows 5000",
  },
  load: {
    summary: "write numbered rows into a sample source, print what committed",
    usage: "load --name N [--rate 100] [--seconds 30] [--data-dir DIR]",
    flags: [
      ["--name N", "the sample cluster"],
      ["--rate N", "rows per second (default 100)"],
      ["--seconds N", "how long (default 30)"],
      DATA_DIR,
    ],
    example: "npm run tooling -- load --name billing --rate 200 --seconds 10",
  },
};
