import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../domain/errors.js";
import { LocalProvider } from "../providers/local/local-provider.js";
import { nonNegative } from "./flag-values.js";

function required(name: string, v: string | undefined): string {
  if (!v) throw new InvalidArgumentError(`--${name} is required`);
  return v;
}

/** The superuser's password for register: never from the command line, where ps shows it to every user. */
async function registerPassword(file: string | undefined, stdin: boolean | undefined): Promise<string> {
  let pw: string | undefined;
  if (file) pw = readFileSync(file, "utf8");
  else if (stdin) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    pw = Buffer.concat(chunks).toString("utf8");
  } else pw = process.env.PGSHIFT_REGISTER_PASSWORD;
  pw = pw?.replace(/\r?\n$/, "");
  if (!pw) {
    throw new InvalidArgumentError(
      "the superuser's password is required: --password-file FILE, --password-stdin, or PGSHIFT_REGISTER_PASSWORD in the environment",
    );
  }
  return pw;
}

/** The flags its parser takes: `pgshift help` describes each, and a test holds the two to each other. */
export const LOCAL_OPTIONS = {
  "data-dir": { type: "string" },
  name: { type: "string" },
  "pg-data": { type: "string" },
  port: { type: "string" },
  user: { type: "string" },
  "password-file": { type: "string" },
  "password-stdin": { type: "boolean" },
} as const;

export async function localCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: LOCAL_OPTIONS,
    strict: true,
  });
  const dataDir = resolve(values["data-dir"] ?? process.env.PGSHIFT_DATA_DIR ?? ".pgshift");
  const provider = new LocalProvider(resolve(process.env.PGSHIFT_LOCAL_DIR ?? join(dataDir, "local")));
  const out = (v: unknown): void =>
    void process.stdout.write(JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2) + "\n");
  switch (sub) {
    case "list": {
      const rows = [];
      for (const name of provider.list()) {
        const c = provider.cluster({ id: name });
        rows.push({ name, port: c.port, running: await c.isRunning(), dataDir: c.dataDir });
      }
      return out(rows);
    }
    case "register": {
      const c = await provider.register(required("name", values.name), {
        dataDir: resolve(required("pg-data", values["pg-data"])),
        port: nonNegative("port", required("port", values.port), 5432),
        user: required("user", values.user),
        password: await registerPassword(values["password-file"], values["password-stdin"]),
      });
      return out({ name: values.name, port: c.port, dataDir: c.dataDir });
    }
    default:
      throw new InvalidArgumentError(
        `unknown local command "${sub ?? ""}"; use list or register (a sample source and a load: npm run tooling -- sample|load)`,
      );
  }
}
