import { readFileSync } from "node:fs";

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function lookup(name: string): OsUser | undefined {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f.length >= 7) {
      return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "/" };
    }
  }
  return undefined;
}

/**
 * The user postgres processes run as. PostgreSQL refuses to run as root, so
 * when we are root we hand its processes to an unprivileged account; otherwise
 * they run as ourselves (undefined).
 */
export function postgresRunAs(): OsUser | undefined {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return undefined;
  const wanted = process.env.PGSHIFT_PG_USER;
  const user = wanted ? lookup(wanted) : (lookup("postgres") ?? lookup("nobody"));
  if (!user) {
    throw new Error(
      `running as root, but no unprivileged user ${wanted ? `"${wanted}" ` : '"postgres" or "nobody" '}exists to run PostgreSQL; create one or set PGSHIFT_PG_USER`,
    );
  }
  if (user.uid === 0) throw new Error(`PGSHIFT_PG_USER=${user.name} is root; PostgreSQL refuses to run as root`);
  return user;
}
