import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { migrate } from '../../src/db/migrate.js';
import { PgDb } from '../../src/db/index.js';
import { freePort } from '../../test/helpers/app.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { databaseOn, latencyRow, round, type BenchRow } from '../lib.js';
import type { SuiteContext } from '../run.js';

/**
 * DESIGN §5, "compiled cold start < 1 s": the time from spawning a fresh process to its first
 * `/healthz` 200, for
 *  - Warden compiled (`npm run build`, then `node dist/src/main.js`, as the Docker image runs it),
 *    on the benchmark's PostgreSQL (migrated: the start only checks the migrations) and Redis;
 *  - `npm start`'s launcher (`node scripts/start.mjs main`: it checks the build is current, then
 *    runs it) — informational;
 *  - a bare Bolt 5 HTTP app with one `/healthz` route, the floor of loading Bolt at all.
 * Alternated run by run (BENCH_STARTUP_RUNS each, default 7), with the RSS of the process when it
 * first answered.
 */

const SUITE = 'startup';
const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 7);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const BARE_APP = `
import bolt from '@slack/bolt';
const receiver = new bolt.HTTPReceiver({
  signingSecret: 'bench-startup-secret',
  customRoutes: [{ path: '/healthz', method: ['GET'], handler: (req, res) => { res.writeHead(200); res.end('ok'); } }],
});
const app = new bolt.App({ token: 'xoxb-bench', receiver, clientOptions: { slackApiUrl: process.env.SLACK_API_URL } });
app.command('/users', async ({ ack }) => ack());
await app.start(Number(process.env.PORT));
`;

interface Start {
  ms: number;
  rssMb: number;
}

/** Spawns `args`, polls /healthz every 5 ms until it answers 200, then stops the process. */
async function coldStart(args: string[], env: Record<string, string>): Promise<Start> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: root, env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port) }, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited (code ${child.exitCode}) before answering /healthz`);
      if (performance.now() - t0 > 20_000) throw new Error(`${args.join(' ')}: no /healthz 200 within 20 s`);
      try {
        const res = await request(`http://127.0.0.1:${port}/healthz`, { headersTimeout: 1000, bodyTimeout: 1000 });
        await res.body.dump();
        if (res.statusCode === 200) break;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const ms = performance.now() - t0;
    // The process answering may be a launcher's child: count the whole tree's resident memory.
    return { ms, rssMb: treeRssMb(child.pid!) };
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Resident memory of a process and its descendants (Linux /proc), in MB. */
function treeRssMb(pid: number): number {
  const kb = (p: number): number => {
    try {
      const status = fs.readFileSync(`/proc/${p}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const children = fs.readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      return rss + children.reduce((sum, c) => sum + kb(c), 0);
    } catch {
      return 0;
    }
  };
  return round(kb(pid) / 1024);
}

export async function run(ctx: SuiteContext): Promise<BenchRow[]> {
  ctx.log('startup: npm run build');
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'ignore' });
  const url = await databaseOn(ctx.databaseUrl, 'warden_bench_startup');
  const db = PgDb.connect(url, 2);
  await migrate(db);
  await db.close();
  const fake = await new FakeSlack().start();
  // The bare app sits under node_modules so that @slack/bolt resolves from it.
  const bareFile = path.join(root, 'node_modules', '.cache', 'warden-bench', `bare-start-${process.pid}.mjs`);
  fs.mkdirSync(path.dirname(bareFile), { recursive: true });
  fs.writeFileSync(bareFile, BARE_APP);
  const env = {
    DATABASE_URL: url,
    ...(ctx.redisUrl ? { REDIS_URL: ctx.redisUrl } : {}),
    SLACK_API_URL: fake.apiUrl,
    SLACK_BOT_TOKEN: 'xoxb-bench-startup',
    SLACK_SIGNING_SECRET: 'bench-startup-secret',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
  };
  const kinds = {
    compiled: { label: 'warden compiled (node dist/src/main.js)', args: ['dist/src/main.js'], env },
    launcher: { label: 'warden via npm start launcher (node scripts/start.mjs main)', args: ['scripts/start.mjs', 'main'], env },
    bare: { label: 'bare Bolt 5 HTTP app', args: [bareFile], env: { SLACK_API_URL: fake.apiUrl } },
  };
  const results: Record<keyof typeof kinds, Start[]> = { compiled: [], launcher: [], bare: [] };
  try {
    // One unmeasured start each: the first read of node_modules from disk is not a cold start of Warden.
    for (const k of Object.values(kinds)) await coldStart(k.args, k.env);
    for (let i = 0; i < RUNS; i++) {
      const order = (Object.keys(kinds) as (keyof typeof kinds)[]).map((_, j, all) => all[(i + j) % all.length]);
      for (const k of order) results[k].push(await coldStart(kinds[k].args, kinds[k].env));
    }
  } finally {
    fs.rmSync(bareFile, { force: true });
    await fake.stop();
  }
  ctx.log(`startup: ${RUNS} cold starts each done`);
  const rows: BenchRow[] = [];
  for (const [k, spec] of Object.entries(kinds) as [keyof typeof kinds, (typeof kinds)[keyof typeof kinds]][]) {
    const starts = results[k];
    rows.push(latencyRow(SUITE, `${spec.label}: spawn → /healthz 200`, starts.map((s) => s.ms), k === 'compiled' ? { p: 95, ms: 1000 } : undefined));
    rows.push({ suite: SUITE, name: `${spec.label}: RSS when first ready (process tree)`, n: starts.length, value: Math.max(...starts.map((s) => s.rssMb)), unit: 'MB (max)' });
  }
  return rows;
}
