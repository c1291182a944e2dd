// The size budget: the client, minified and gzipped, as an application bundler or a page ships it.
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const BUDGET = 15 * 1024;
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let worst = 0;
for (const format of ["esm", "iife"]) {
  const result = await build({
    entryPoints: [join(root, "src/index.ts")],
    bundle: true,
    minify: true,
    target: "es2020",
    format,
    globalName: format === "iife" ? "Chorus" : undefined,
    write: false,
  });
  const code = result.outputFiles[0].contents;
  const gzipped = gzipSync(code, { level: 9 }).length;
  worst = Math.max(worst, gzipped);
  console.log(`@chorus/client ${format}: ${code.length} bytes minified, ${gzipped} bytes min+gzip (${(gzipped / 1024).toFixed(1)} KB; budget ${BUDGET / 1024} KB)`);
}
if (worst > BUDGET) {
  console.error(`over the size budget: ${worst} > ${BUDGET} bytes`);
  process.exit(1);
}
