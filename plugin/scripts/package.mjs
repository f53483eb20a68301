// Build the two store directories from the one source: dist/chrome (a service worker, no Firefox keys)
// and dist/firefox (background scripts, the gecko id). `npm run package` then zips each with web-ext.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const FILES = ["popup.html", "popup.css", "options.html", "icons", "src"];

/**
 * @param {string} browser
 * @param {(manifest: Record<string, any>) => Record<string, any>} adapt
 */
function build(browser, adapt) {
  const out = join(root, "dist", browser);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const name of FILES) cpSync(join(root, name), join(out, name), { recursive: true });
  const manifest = JSON.parse(readFileSync(join(root, "manifest.json"), "utf-8"));
  writeFileSync(join(out, "manifest.json"), `${JSON.stringify(adapt(manifest), null, 2)}\n`);
  console.log(`built ${out}`);
}

if (process.argv[2] !== "build") {
  console.error("usage: node scripts/package.mjs build");
  process.exit(2);
}
// The source manifest loads unpacked in both browsers; each store gets only the keys its browser reads.
build("chrome", (manifest) => {
  const { browser_specific_settings: _firefox, ...rest } = manifest;
  return { ...rest, background: { service_worker: manifest.background.service_worker, type: "module" } };
});
build("firefox", (manifest) => {
  const { minimum_chrome_version: _chrome, ...rest } = manifest;
  return { ...rest, background: { scripts: manifest.background.scripts, type: "module" } };
});
