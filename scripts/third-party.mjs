// What the bundle carries of other people's code, for whoever ships it: every package with a file in the bundle
// (from esbuild's metafile), with its version, its declared licence and the licence text it ships, written to
// dist/THIRD-PARTY-NOTICES.md, and the same packages as a CycloneDX SBOM, dist/sbom.cdx.json. Licence and
// vulnerability scanners read node_modules; a bundle hides it, so the build says it itself. (`npm sbom --omit=dev`
// is no substitute: it leaves out pg, @grpc/grpc-js and yaml, which dev tools also name as peers.)
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The package folder (node_modules/… or node_modules/…/node_modules/…) an input path belongs to. */
export function packageDirOf(input) {
  const at = input.lastIndexOf("node_modules/");
  if (at < 0) return undefined;
  const rest = input.slice(at + "node_modules/".length).split("/");
  const name = rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
  return input.slice(0, at) + "node_modules/" + name;
}

const LICENCE_FILE = /^(licen[cs]e|copying|notice)(\.(md|txt|markdown))?$/i;

export function writeThirdParty(metafile, outDir) {
  const dirs = new Set();
  for (const { inputs } of Object.values(metafile.outputs)) {
    for (const input of Object.keys(inputs)) {
      const dir = packageDirOf(input);
      if (dir) dirs.add(dir);
    }
  }
  const packages = [...dirs]
    .map((dir) => {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      const files = existsSync(dir) ? readdirSync(dir).filter((f) => LICENCE_FILE.test(f)) : [];
      return { name: pkg.name, version: pkg.version, license: pkg.license ?? "UNDECLARED", dir, files };
    })
    .sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
  const seen = new Set();
  // The same text (Apache-2.0 as each AWS package ships it) is printed once and referred to after.
  const printed = new Map();
  const parts = [
    "# Third-party notices\n",
    "The pgshift bundle (dist/) contains code from the packages below, each under its own licence.\n",
  ];
  for (const p of packages) {
    const id = `${p.name}@${p.version}`;
    if (seen.has(id)) continue;
    seen.add(id);
    parts.push(`\n## ${id}\n\nLicence: ${p.license}\n`);
    if (p.files.length === 0)
      parts.push("\nThe package ships no licence file; its package.json declares the licence above.\n");
    for (const f of p.files) {
      const text = readFileSync(join(p.dir, f), "utf8").trim();
      const first = printed.get(text);
      if (first) parts.push(`\n${f}: the same text as ${first}'s.\n`);
      else parts.push(`\n### ${f}\n\n\`\`\`text\n${text}\n\`\`\`\n`);
      printed.set(text, first ?? id);
    }
  }
  writeFileSync(join(outDir, "THIRD-PARTY-NOTICES.md"), parts.join(""));
  writeFileSync(join(outDir, "sbom.cdx.json"), JSON.stringify(cycloneDx(packages), null, 2) + "\n");
}

function cycloneDx(packages) {
  const self = JSON.parse(readFileSync("package.json", "utf8"));
  const ref = (p) => `pkg:npm/${p.name.replace(/^@/, "%40")}@${p.version}`;
  const unique = [...new Map(packages.map((p) => [ref(p), p])).values()];
  return {
    bomFormat: "CycloneDX",
    specVersion: "1.5",
    version: 1,
    metadata: {
      component: { type: "application", name: self.name, version: self.version, "bom-ref": ref(self) },
    },
    components: unique.map((p) => ({
      type: "library",
      "bom-ref": ref(p),
      name: p.name,
      version: p.version,
      purl: ref(p),
      licenses: p.license === "UNDECLARED" ? [] : [{ expression: p.license }],
    })),
  };
}
