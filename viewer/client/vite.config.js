// Builds Neuroglancer's default viewer (the npm package, unmodified) as static files.
// Run by viewer/bundle.py in a cache folder (vite build --outDir DIR).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// ikonate 1.1.1 (the registry's release; neuroglancer pins a git commit) lacks three
// icons the client imports: each maps to the closest icon the release has.
const icon = (name) => fileURLToPath(new URL(`./node_modules/ikonate/icons/${name}.svg`, import.meta.url));
const missingIcons = { "code-alt": "edit", "controls-alt": "controls", layers: "stack" };

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  logLevel: "warn",
  resolve: {
    alias: Object.entries(missingIcons).map(([name, have]) => ({
      find: new RegExp(`^ikonate/icons/${name}\\.svg`),
      replacement: icon(have),
    })),
  },
  worker: { format: "es" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 8000,
    reportCompressedSize: false,
  },
});
