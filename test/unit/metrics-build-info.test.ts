import fs from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { Metrics } from '../../src/metrics.js';

const saved = process.env.npm_package_version;
afterEach(() => {
  if (saved === undefined) delete process.env.npm_package_version;
  else process.env.npm_package_version = saved;
});

it('warden_build_info names the version from package.json also when not started through npm', async () => {
  // `node dist/src/main.js` (the image) and `node scripts/start.mjs` have no npm_package_version.
  delete process.env.npm_package_version;
  const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
  const metrics = new Metrics({ db: {} as Db });
  const info = (await metrics.registry.getSingleMetricAsString('warden_build_info')).split('\n').find((l) => l.startsWith('warden_build_info{'));
  expect(info).toBe(`warden_build_info{version="${version}",node="${process.version}"} 1`);
});
