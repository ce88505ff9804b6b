// `npm start` (and `npm run migrate`): the compiled build when it is there and current, else the
// TypeScript sources through tsx, so the README works on a fresh checkout without a build step.
//
// A build is "current" when it is newer than every file in src/, commands/, sql/ and
// package.json. A stale build is never run silently: after a `git pull` without `npm run build`
// it would run yesterday's code. When the sources are absent (the Docker image ships only
// dist/), the build is what runs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const which = process.argv[2] ?? 'main';
const entries = { main: 'src/main', migrate: 'src/db/migrate-cli' };
const entry = entries[which];
if (!entry) {
  console.error(`unknown entry ${which}; one of ${Object.keys(entries).join(', ')}`);
  process.exit(2);
}
const built = path.join(root, 'dist', `${entry}.js`);
const stamp = path.join(root, 'dist', '.built-at');

function newestSource() {
  let newest = 0;
  const visit = (p) => {
    let st;
    try {
      st = fs.statSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const f of fs.readdirSync(p)) visit(path.join(p, f));
    else newest = Math.max(newest, st.mtimeMs);
  };
  for (const p of ['src', 'commands', 'sql', 'package.json']) visit(path.join(root, p));
  return newest;
}

const hasSources = fs.existsSync(path.join(root, 'src', 'main.ts'));
const hasBuild = fs.existsSync(built) && fs.existsSync(stamp);
const current = hasBuild && (!hasSources || fs.statSync(stamp).mtimeMs >= newestSource());

if (current) {
  await import(pathToFileURL(built).href);
} else {
  if (hasBuild) console.error('warden: dist/ is older than the sources; running the sources with tsx (run `npm run build` to use the build).');
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    console.error('warden: no current build in dist/ and tsx is not installed. Run `npm run build` (or `npm install` for tsx).');
    process.exit(2);
  }
  register();
  await import(pathToFileURL(path.join(root, `${entry}.ts`)).href);
}
