// `npm run build`: a dist/ directory that runs as is with `node dist/src/main.js` — compiled
// JavaScript, the SQL migrations beside it (src/db/migrate.ts reads ../../sql from its own
// folder), a package.json that marks it as ES modules, and a stamp `npm start` compares with
// the sources. The old dist/ is removed first so that deleted sources leave no stale files.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
// dist/src/main.js becomes one file with the packages it uses (scripts/bundle-options.mjs says
// which stay in node_modules and why). The other compiled files stay for the other entry point
// (dist/src/db/migrate-cli.js, `npm run migrate`).
const main = path.join(dist, 'src', 'main.js');
const bundled = path.join(dist, 'src', 'main.bundle.js');
const { build } = await import('esbuild');
const { bundleOptions } = await import('./bundle-options.mjs');
await build({ ...bundleOptions, entryPoints: [main], outfile: bundled });
fs.renameSync(bundled, main);
fs.cpSync(path.join(root, 'sql'), path.join(dist, 'sql'), { recursive: true });
// The version too: warden_build_info reads it from here (src/metrics.ts).
const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
fs.writeFileSync(path.join(dist, 'package.json'), JSON.stringify({ type: 'module', private: true, version }, null, 2) + '\n');
fs.writeFileSync(path.join(dist, '.built-at'), new Date().toISOString() + '\n');
console.log('built dist/ (run: node dist/src/main.js, or npm start)');
