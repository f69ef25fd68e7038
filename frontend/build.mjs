// Build the dashboard into ../frontend_dist/ with esbuild.
//
// It writes three things. index.html keeps __EXPMAN_BASE_URL__, which the
// server replaces with its base URL. assets/ contains hashed scripts, styles and
// lazily loaded chunks. build-info.json records a hash of the sources, which a
// test compares with the sources to catch a frontend_dist/ older than frontend/.
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(HERE, "..", "frontend_dist");
const ASSETS = path.join(OUT, "assets");
const BASE_URL_MARKER = "__EXPMAN_BASE_URL__";

// The files whose content decides the build. tests/browser/test_build_info.py
// computes the same hash; change both together.
const SOURCE_FILES = ["build.mjs", "index.html", "package.json", "package-lock.json", "tsconfig.json"];
const SOURCE_FOLDERS = ["src"];

async function listFiles(folder) {
  const found = [];
  for (const entry of await readdir(path.join(HERE, folder), { withFileTypes: true })) {
    const relative = path.posix.join(folder, entry.name);
    if (entry.isDirectory()) found.push(...(await listFiles(relative)));
    else if (entry.isFile()) found.push(relative);
  }
  return found;
}

// Hash the sources: SHA-256 over "<path>\0<sha256 of the file>\n" for each
// file, sorted by path (relative to frontend/, with "/" separators).
async function hashSources() {
  const paths = [...SOURCE_FILES];
  for (const folder of SOURCE_FOLDERS) paths.push(...(await listFiles(folder)));
  // Code unit order, as Python's sorted() gives for these ASCII paths.
  paths.sort((a, b) => {
    if (a < b) return -1;
    if (a > b) return 1;
    return 0;
  });
  const files = {};
  const total = createHash("sha256");
  for (const relative of paths) {
    const digest = createHash("sha256").update(await readFile(path.join(HERE, relative))).digest("hex");
    files[relative] = digest;
    total.update(`${relative}\0${digest}\n`);
  }
  return { source_hash: total.digest("hex"), files };
}

async function main() {
  await rm(ASSETS, { recursive: true, force: true });
  await mkdir(ASSETS, { recursive: true });

  const result = await esbuild.build({
    absWorkingDir: HERE,
    entryPoints: { app: "src/main.tsx" },
    bundle: true,
    splitting: true,
    format: "esm",
    target: ["es2022", "chrome100", "firefox100", "safari15"],
    // EXPMAN_DEBUG_BUILD=1 keeps names and lines readable in stack traces. Commit minified builds only.
    minify: !process.env.EXPMAN_DEBUG_BUILD,
    sourcemap: false,
    legalComments: "linked",
    outdir: ASSETS,
    entryNames: "[name]-[hash]",
    chunkNames: "chunk-[hash]",
    assetNames: "[name]-[hash]",
    metafile: true,
    logLevel: "warning",
  });

  // The entry's script and stylesheet, named by content hash.
  const outputs = Object.entries(result.metafile.outputs);
  const entry = outputs.find(([, output]) => output.entryPoint === "src/main.tsx");
  if (!entry) throw new Error("esbuild produced no output for src/main.tsx");
  const script = path.basename(entry[0]);
  const style = entry[1].cssBundle ? path.basename(entry[1].cssBundle) : null;

  const template = await readFile(path.join(HERE, "index.html"), "utf-8");
  if (!template.includes(BASE_URL_MARKER)) {
    throw new Error(`index.html is missing ${BASE_URL_MARKER}, which the server replaces with its base URL`);
  }
  const page = template
    .replace("<!-- STYLE -->", style ? `<link rel="stylesheet" href="${BASE_URL_MARKER}assets/${style}">` : "")
    .replace("<!-- SCRIPT -->", `<script type="module" src="${BASE_URL_MARKER}assets/${script}"></script>`);
  await writeFile(path.join(OUT, "index.html"), page);

  const info = { ...(await hashSources()), script, style };
  await writeFile(path.join(OUT, "build-info.json"), JSON.stringify(info, null, 2) + "\n");

  for (const [file, output] of outputs) {
    console.log(`${path.relative(OUT, path.resolve(HERE, file)).padEnd(40)} ${(output.bytes / 1024).toFixed(1)} KiB`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
