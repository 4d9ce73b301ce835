// Bundles the dashboard and the latency page into dist/ (served by the gateway).
// The explore view (Perspective: JS, two WebAssembly modules, CSS) is a
// separate chunk that app.js imports only when the view is opened.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(root, 'src');
const dist = path.join(root, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: {
    app: path.join(src, 'app.js'),
    latency: path.join(src, 'latency.js'),
    explore: path.join(src, 'explore.css'),
  },
  outdir: dist,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
  loader: { '.wasm': 'file' },
  assetNames: '[name]-[hash]',
  chunkNames: '[name]-[hash]',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'info',
});
for (const file of ['index.html', 'latency.html', 'style.css']) {
  await copyFile(path.join(src, file), path.join(dist, file));
}
