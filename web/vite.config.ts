import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The console is built into dist/web, which the service serves on its API port. Everything it loads is in there.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  build: {
    outDir: fileURLToPath(new URL("../dist/web", import.meta.url)),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    target: "es2022",
  },
  logLevel: "warn",
});
