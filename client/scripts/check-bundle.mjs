// Fails when the dashboard's first load needs more than 150 kB of gzipped JavaScript: the entry
// script of static/index.html plus the chunks it preloads (lazy chunks — charts, admin — are not
// counted). Run after `vite build` (make client-test does).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';

const LIMIT_BYTES = 150_000;
const root = new URL('../../static/', import.meta.url).pathname;
const html = readFileSync(join(root, 'index.html'), 'utf8');
const files = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
if (!files.length) throw new Error('no script in static/index.html: run the build first');
let total = 0;
for (const f of files) {
  const size = gzipSync(readFileSync(join(root, f))).length;
  total += size;
  console.log(`${f}: ${(size / 1000).toFixed(1)} kB gzipped`);
}
console.log(`first load: ${(total / 1000).toFixed(1)} kB gzipped JavaScript (limit ${LIMIT_BYTES / 1000} kB)`);
if (total > LIMIT_BYTES) {
  console.error('the dashboard first load is over budget: move code into a lazy chunk (import())');
  process.exit(1);
}
