// Build dist/: ESM and CommonJS bundles with their type declarations, and a minified script for pages.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const common = { entryPoints: [join(root, "src/index.ts")], bundle: true, target: "es2020", logLevel: "warning" };

rmSync(dist, { recursive: true, force: true });
await build({ ...common, format: "esm", outfile: join(dist, "esm/index.js") });
await build({ ...common, format: "cjs", outfile: join(dist, "cjs/index.js") });
// For a <script> tag (the live page loads it from static files): window.Chorus.ChorusClient.
await build({ ...common, format: "iife", globalName: "Chorus", minify: true, outfile: join(dist, "chorus-client.min.js") });

// Declarations: tsc type-checks and writes them next to the ESM bundle; the CommonJS copy sits
// under a package.json that makes TypeScript read them as CommonJS.
execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root], { stdio: "inherit" });
for (const name of readdirSync(join(dist, "esm"))) {
  if (name.endsWith(".d.ts")) cpSync(join(dist, "esm", name), join(dist, "cjs", name));
}
mkdirSync(join(dist, "cjs"), { recursive: true });
writeFileSync(join(dist, "cjs/package.json"), JSON.stringify({ type: "commonjs" }) + "\n");
console.log("built dist/ (esm, cjs, chorus-client.min.js, types)");
