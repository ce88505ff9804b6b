import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { linkSlack } from '../../test/helpers/fixtures.js';
import { FakeSlack, type CapturedCall } from '../../src/slack/sim/fake-slack.js';
import { SlackDriver } from '../../src/slack/sim/driver.js';
import { benchDatabase, BENCH_USERS } from '../dataset.js';
import { latencyRow, percentile, round, type BenchRow } from '../lib.js';
import type { SuiteContext } from '../run.js';
import { BARE_TEXT, startTarget, type TargetKind, type TargetOptions } from '../slack-target.js';

/**
 * DESIGN §5, Slack side: signed `/users show userNNN` slash commands from a linked admin,
 * against the real Warden HTTP app and, in the same run, two bare Bolt apps (same signing
 * secret; bench/slack-target.ts):
 *  - 'bare bolt': a /users handler that acks and respond()s a static text (no I/O) — the
 *    floor of Bolt itself; its end-to-end ratio is informational only;
 *  - 'bare bolt + same SQL': acks, runs Warden's user lookup SQL on its own pg Pool of
 *    Warden's size and respond()s `${username}: ${role}` — the "same request" the
 *    "overhead ≤ 1.2× bare Bolt" target is checked against.
 *
 *  - ack latency: POST sent → HTTP 200 received (Slack's 3-second rule), p50/p99;
 *  - end-to-end: POST sent → the response_url post has arrived at FakeSlack (its whole body,
 *    before the fake validates its blocks), p50/p95;
 *  - overhead ratio: Warden p50 / bare p50, for ack and end-to-end, against each bare app;
 *  - RSS: max process.memoryUsage.rss() of the app's process sampled (every 20 ms) under load.
 *
 * Each app runs in a child process of its own (bench/slack-target.ts) so that the load
 * generator and FakeSlack, which live here, share neither its event loop nor its heap.
 * BENCH_SLACK_INPROCESS=1 runs the apps inside this process instead (RSS then includes
 * the load generator). Loopback only; bounded: BENCH_SLACK_REQUESTS (2,000) per app at
 * BENCH_SLACK_CONCURRENCY (50), measured in rounds whose app order rotates (and reverses
 * every other cycle) so each app runs first, middle and last equally often and background
 * load on the machine hits all apps alike, after a cold burst (reported apart), a warm-up
 * at the same concurrency and a serial (c=1) pass. Each round starts with its 50 workers
 * sending at the same instant; those first requests queue behind one another and are
 * reported on their own row, so that the "@50" rows are 50 requests in flight at all times.
 */

const SUITE = 'slack';
const SIGNING_SECRET = 'bench-signing-secret-0123456789abcdef';
const ADMIN_SLACK_ID = 'U_BENCH_ADMIN';
const ADMIN_USERNAME = 'user100';
const REQUESTS = Number(process.env.BENCH_SLACK_REQUESTS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_SLACK_CONCURRENCY ?? 50);
const WARMUP = 200;
const SERIAL = 200;
const REPLY_TIMEOUT_MS = 10_000;
const here = path.dirname(fileURLToPath(import.meta.url));
/**
 * Open loop: offered rates (req/s), seconds per app per round, rounds (apps alternate each round).
 * 8 rounds of 3 s: at 50 req/s the ack p99 is then the 12th-slowest of 1,200 requests rather
 * than the 6th of 600 — with 4 rounds, the Warden/bare+SQL ack p99 ratio ranged 0.33–1.56 over
 * six runs of the same code (median 0.74), decided by a few millisecond-long pauses of the
 * machine in one app's turn.
 */
const OPEN_RATES = (process.env.BENCH_OPEN_RATES ?? '50,150,300').split(',').map(Number).filter((n) => n > 0);
const OPEN_SECONDS = Number(process.env.BENCH_OPEN_SECONDS ?? 3);
const OPEN_ROUNDS = Number(process.env.BENCH_OPEN_ROUNDS ?? 8);

interface OpenResult {
  rate: number;
  samples: Map<TargetKind, Samples>;
  loadStart: number;
  loadEnd: number;
}

/** The apps under test, in row order; `short` names them in the ratio rows. */
interface TargetSpec {
  kind: TargetKind;
  label: string;
  short: string;
  /** Measure name of its end-to-end rows ("<label> <e2e> @c"). */
  e2e: string;
}

const SPECS: TargetSpec[] = [
  { kind: 'warden', label: 'warden', short: 'warden', e2e: 'e2e /users show' },
  { kind: 'bare', label: 'bare bolt', short: 'bare', e2e: 'e2e' },
  { kind: 'bare-sql', label: 'bare bolt + same SQL', short: 'bare+sql', e2e: 'e2e' },
];

/** Measured in 2 × (number of apps) rounds: every app in every position equally often. */
const ROUNDS = 2 * SPECS.length;

/**
 * Round r's app order: the list rotated by r, reversed in every other cycle, so that each
 * app runs in each position, and after each other app, equally often over ROUNDS rounds.
 */
function roundOrder<T>(items: T[], r: number): T[] {
  const n = items.length;
  const rotated = items.map((_, i) => items[(i + r) % n]);
  return Math.floor(r / n) % 2 === 1 ? rotated.reverse() : rotated;
}

interface Target {
  kind: TargetKind;
  label: string;
  driver: SlackDriver;
  /** Starts a measurement window; returns the current RSS in bytes. */
  resetRss(): Promise<number>;
  /** Max RSS (bytes) sampled in the window, and the app process's CPU time in it (child mode). */
  usage(): Promise<{ maxRss: number; cpuMs?: number }>;
  stop(): Promise<void>;
}

interface Samples {
  ack: number[];
  e2e: number[];
  errors: string[];
  wallMs: number;
  /** Per request: [sent at (ms since the suite started), ack ms, e2e ms], for BENCH_SLACK_TRACE. */
  trace: [number, number, number][];
  /** Open loop: how far behind its schedule the sender fell at worst (a busy load generator). */
  senderLateMs?: number;
}

const emptySamples = (): Samples => ({ ack: [], e2e: [], errors: [], wallMs: 0, trace: [] });
const epoch = performance.now();

/** Response_url posts as they reach FakeSlack, keyed by response id, with arrival time. */
class Replies {
  private arrived = new Map<string, { at: number; call: CapturedCall }>();
  private waiting = new Map<string, (r: { at: number; call: CapturedCall }) => void>();

  constructor(fake: FakeSlack) {
    fake.onCall((call) => {
      if (call.method !== 'response_url' || !call.responseId) return;
      // When the post had arrived, not when the fake finished checking its blocks (Warden's
      // replies carry Block Kit, the bare apps' plain text: the check is the fake's time).
      const r = { at: call.arrivedAt ?? performance.now(), call };
      const w = this.waiting.get(call.responseId);
      if (w) {
        this.waiting.delete(call.responseId);
        w(r);
      } else this.arrived.set(call.responseId, r);
    });
  }

  wait(responseId: string, timeoutMs: number): Promise<{ at: number; call: CapturedCall }> {
    const got = this.arrived.get(responseId);
    if (got) {
      this.arrived.delete(responseId);
      return Promise.resolve(got);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(responseId);
        reject(new Error(`no response_url post within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(responseId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }
}

/** Spreads the requests over the whole user table (deterministic). */
const usernameFor = (i: number) => `user${1 + ((i * 7919) % BENCH_USERS)}`;

/**
 * One signed `/users show` through `t`: ack and end-to-end latency measured from `t0`
 * (the closed loop: when it was sent; the open loop: when it was due, so a late sender
 * cannot hide queueing — no coordinated omission).
 */
async function one(t: Target, fake: FakeSlack, replies: Replies, n: number, out: Samples, due?: number): Promise<void> {
  const username = usernameFor(n);
  const responseUrl = fake.responseUrl();
  const responseId = responseUrl.split('/').pop()!;
  const ids = { responseUrl, responseId, triggerId: `trig.bench.${t.kind}.${n}.${Date.now()}` };
  const body = t.driver.commandBody(ADMIN_SLACK_ID, `/users show ${username}`, 'C_ADMIN', ids);
  const headers = t.driver.sign(body);
  const t0 = due ?? performance.now();
  const answer = await t.driver.post(body, headers);
  const ackAt = performance.now();
  if (answer.status !== 200) {
    out.errors.push(`${t.label}: HTTP ${answer.status}`);
    return;
  }
  let reply: { at: number; call: CapturedCall };
  try {
    reply = await replies.wait(responseId, REPLY_TIMEOUT_MS);
  } catch (e) {
    out.errors.push(`${t.label}: ${(e as Error).message}`);
    return;
  }
  const text = String(reply.call.args.text ?? '');
  const ok = t.kind === 'bare' ? text === BARE_TEXT : text.startsWith(`${username}:`);
  if (!ok) {
    out.errors.push(`${t.label}: unexpected reply for ${username}: ${text.slice(0, 120)}`);
    return;
  }
  out.ack.push(ackAt - t0);
  out.trace.push([round(t0 - epoch), round(ackAt - t0), round(reply.at - t0)]);
  out.e2e.push(reply.at - t0);
}

/**
 * Closed loop: `concurrency` workers, each sending its next request when the last one is answered.
 * With `startBurst`, each worker's first request — all `concurrency` of them sent at the same
 * instant when the round starts — is recorded there instead of in the result: that synchronized
 * burst is a different load (reported on its own row) from 50 requests in flight at all times.
 */
async function drive(
  t: Target,
  fake: FakeSlack,
  replies: Replies,
  count: number,
  concurrency: number,
  offset: number,
  startBurst?: Samples,
): Promise<Samples> {
  const out = emptySamples();
  let next = 0;
  let burst = 0;
  const worker = async () => {
    // Request numbers stay unique (they make the trigger_id): the burst's follow the round's.
    if (startBurst) await one(t, fake, replies, offset + count + burst++, startBurst);
    while (next < count) await one(t, fake, replies, offset + next++, out);
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  out.wallMs = performance.now() - started;
  return out;
}

/**
 * Open loop: requests due at a fixed rate whatever the app's answers — what Slack offers —
 * so a slower app is offered exactly as much as a faster one. Latency counts from each
 * request's due time.
 */
async function driveOpen(t: Target, fake: FakeSlack, replies: Replies, rate: number, seconds: number, offset: number): Promise<Samples> {
  const out = emptySamples();
  const count = Math.max(1, Math.round(rate * seconds));
  const start = performance.now() + 5;
  const pending: Promise<void>[] = [];
  let lateMs = 0;
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    else lateMs = Math.max(lateMs, -wait);
    pending.push(one(t, fake, replies, offset + i, out, due));
  }
  await Promise.all(pending);
  out.wallMs = performance.now() - start;
  out.senderLateMs = lateMs;
  return out;
}

function merge(into: Samples, s: Samples): void {
  into.senderLateMs = Math.max(into.senderLateMs ?? 0, s.senderLateMs ?? 0);
  into.ack.push(...s.ack);
  into.e2e.push(...s.e2e);
  into.errors.push(...s.errors);
  into.wallMs += s.wallMs;
  into.trace.push(...s.trace);
}

interface ChildEntry {
  file: string;
  execArgv: string[];
  /** The bundle lives outside the source tree, where sql/ cannot be found: the suite migrates. */
  migrate: boolean;
  how: string;
  cleanup?: () => void;
}

/**
 * How to start the child: bench/slack-target.ts bundled by esbuild with the options of
 * `npm run build` (scripts/bundle-options.mjs: Warden and its packages in one ESM file, a few
 * packages left in node_modules; it sits under node_modules/.cache so those resolve) and run
 * by plain `node`, as the production image runs dist/src/main.js. BENCH_SLACK_LOADER=tsx, or a
 * missing esbuild, runs the TypeScript through tsx instead (its loader thread adds RSS).
 */
async function childEntry(ctx: SuiteContext): Promise<ChildEntry> {
  const source = path.join(here, '..', 'slack-target.ts');
  const viaTsx: ChildEntry = { file: source, execArgv: ['--import', 'tsx'], migrate: true, how: 'node --import tsx' };
  if (process.env.BENCH_SLACK_LOADER === 'tsx') return viaTsx;
  try {
    const esbuild = await import('esbuild');
    // One file per run: two bench runs at once must not overwrite each other's bundle.
    const outfile = path.join(here, '..', '..', 'node_modules', '.cache', 'warden-bench', `slack-target-${process.pid}.mjs`);
    // Bundled as `npm run build` bundles the image's entry point: the packages go in too.
    const { bundleOptions } = await import(path.join(here, '..', '..', 'scripts', 'bundle-options.mjs'));
    await esbuild.build({ ...bundleOptions, entryPoints: [source], outfile, logLevel: 'silent' });
    return { file: outfile, execArgv: [], migrate: false, how: 'node, esbuild bundle as npm run build makes', cleanup: () => fs.rmSync(outfile, { force: true }) };
  } catch (e) {
    ctx.log(`slack: could not bundle the app with esbuild (${(e as Error).message}); running it through tsx`);
    return viaTsx;
  }
}

/** Starts the app in a child process; resolves once it listens. */
async function childTarget(entry: ChildEntry, opts: TargetOptions, label: string, fake: FakeSlack): Promise<Target> {
  // BENCH_SLACK_CPU_PROF=<dir>: write a V8 CPU profile of each app process there (on stop).
  const prof = process.env.BENCH_SLACK_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_SLACK_CPU_PROF, '--cpu-prof-name', `${opts.kind}.cpuprofile`] : [];
  const child: ChildProcess = fork(entry.file, [JSON.stringify({ ...opts, migrate: entry.migrate })], {
    execArgv: [...entry.execArgv, ...prof],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const nextMessage = (type: string) =>
    new Promise<any>((resolve, reject) => {
      const onMsg = (m: any) => {
        if (m?.type !== type) return;
        cleanup();
        resolve(m);
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`${label} exited (code ${code}) before answering ${type}`));
      };
      const cleanup = () => {
        child.off('message', onMsg);
        child.off('exit', onExit);
      };
      child.on('message', onMsg);
      child.on('exit', onExit);
    });
  const ready = await nextMessage('ready');
  const driver = new SlackDriver({ appUrl: `http://127.0.0.1:${ready.port}`, signingSecret: SIGNING_SECRET, fake });
  const ask = async (type: string) => {
    const p = nextMessage(type);
    child.send({ type });
    return p;
  };
  return {
    kind: opts.kind,
    label,
    driver,
    resetRss: async () => (await ask('rss-reset')).rss,
    usage: async () => {
      const m = await ask('rss');
      return { maxRss: m.max, cpuMs: m.cpuMs };
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Both apps in this process (BENCH_SLACK_INPROCESS=1): RSS is the whole process's. */
async function inProcessTarget(opts: TargetOptions, label: string, fake: FakeSlack): Promise<Target> {
  const running = await startTarget(opts);
  const driver = new SlackDriver({ appUrl: `http://127.0.0.1:${running.port}`, signingSecret: SIGNING_SECRET, fake });
  let max = process.memoryUsage.rss();
  const sample = () => {
    const rss = process.memoryUsage.rss();
    if (rss > max) max = rss;
    return rss;
  };
  const timer = setInterval(sample, 20);
  return {
    kind: opts.kind,
    label,
    driver,
    resetRss: async () => (max = sample()),
    usage: async () => (sample(), { maxRss: max }),
    async stop() {
      clearInterval(timer);
      await running.stop();
    },
  };
}

const MB = 1024 * 1024;


/** One app under test and everything measured on it. */
interface Measured {
  spec: TargetSpec;
  t: Target;
  cold: Samples;
  serial: Samples;
  loaded: Samples;
  /** The first request of every worker in each loaded round: 50 sent at the same instant. */
  roundStarts: Samples;
  /** CPU ms this process (load generator + FakeSlack) used while driving the app's loaded rounds. */
  generatorCpuMs: number;
  rssBase: number;
  use: { maxRss: number; cpuMs?: number };
}

export async function run(ctx: SuiteContext): Promise<BenchRow[]> {
  const { url, db } = await benchDatabase(ctx.databaseUrl, ctx.log);
  const fake = await new FakeSlack().start();
  const targets: Target[] = [];
  let entry: ChildEntry | undefined;
  try {
    const admin = await db.query<{ id: number }>(`SELECT id FROM "user" WHERE username = $1 AND role = 'admin'`, [ADMIN_USERNAME]);
    if (!admin.rows[0]) throw new Error(`${ADMIN_USERNAME} is not an admin in the benchmark data set`);
    await linkSlack(db, ADMIN_SLACK_ID, admin.rows[0].id);

    const inProcess = process.env.BENCH_SLACK_INPROCESS === '1';
    entry = inProcess ? undefined : await childEntry(ctx);
    const start = (opts: TargetOptions, label: string, f: FakeSlack) =>
      entry ? childTarget(entry, opts, label, f) : inProcessTarget(opts, label, f);
    const base = { slackApiUrl: fake.apiUrl, signingSecret: SIGNING_SECRET, databaseUrl: url, redisUrl: ctx.redisUrl };
    const apps: Measured[] = [];
    for (const spec of SPECS) {
      const t = await start({ ...base, kind: spec.kind }, spec.label, fake);
      targets.push(t);
      apps.push({ spec, t, cold: emptySamples(), serial: emptySamples(), loaded: emptySamples(), roundStarts: emptySamples(), generatorCpuMs: 0, rssBase: 0, use: { maxRss: 0 } });
    }
    const byKind = (k: TargetKind) => apps.find((a) => a.spec.kind === k)!;
    ctx.log(
      `slack: apps up (${entry ? `child processes: ${entry.how}` : 'in this process'}; store ${ctx.redisUrl ? 'redis' : 'memory'}); ` +
        `${SPECS.map((s) => s.label).join(', ')}; ${REQUESTS} requests per app at concurrency ${CONCURRENCY} in ${ROUNDS} rotating rounds`,
    );
    ctx.log(
      `slack: the ≤ 1.2× end-to-end overhead target is checked against "bare bolt + same SQL" (the same request); ` +
        `the e2e ratio against "bare bolt" (static text, no I/O) is informational only`,
    );

    const replies = new Replies(fake);
    let offset = 0;
    const pass = async (t: Target, count: number, concurrency: number, startBurst?: Samples) => {
      const s = await drive(t, fake, replies, count, concurrency, offset, startBurst);
      offset += count + concurrency;
      fake.clear();
      return s;
    };

    // Cold burst: the first CONCURRENCY requests after start, all at once, on new
    // connections with cold JIT and pools — reported apart, as a just-deployed app sees it.
    for (const a of apps) a.cold = await pass(a.t, CONCURRENCY, CONCURRENCY);

    // Warm-up at the measured concurrency (JIT, pools, Bolt's auth.test, the client's
    // CONCURRENCY keep-alive connections) — not measured, but must be correct.
    for (const a of apps) {
      const s = await pass(a.t, WARMUP, CONCURRENCY);
      if (s.errors.length) throw new Error(`warm-up failed: ${s.errors[0]}`);
    }

    // Serial pass: latency without queueing, for the overhead explanation.
    for (const a of apps) a.serial = await pass(a.t, SERIAL, 1);

    // Loaded pass, in rounds whose app order rotates.
    for (const a of apps) a.rssBase = await a.t.resetRss();
    for (let r = 0; r < ROUNDS; r++) {
      const size = Math.floor(REQUESTS / ROUNDS) + (r < REQUESTS % ROUNDS ? 1 : 0);
      for (const a of roundOrder(apps, r)) {
        const cpu0 = process.cpuUsage();
        merge(a.loaded, await pass(a.t, size, CONCURRENCY, a.roundStarts));
        const used = process.cpuUsage(cpu0);
        a.generatorCpuMs += (used.user + used.system) / 1000;
      }
    }
    for (const a of apps) a.use = await a.t.usage();

    // Open loop at fixed offered rates, Warden and "bare bolt + same SQL" alternated round by
    // round: equal offered load for both, which a closed loop cannot give (a slower app is
    // offered fewer requests there).
    const openApps = apps.filter((a) => a.spec.kind !== 'bare');
    const open: OpenResult[] = [];
    for (const rate of OPEN_RATES) {
      const result: OpenResult = { rate, samples: new Map(), loadStart: os.loadavg()[0], loadEnd: 0 };
      for (const a of openApps) result.samples.set(a.spec.kind, emptySamples());
      for (let r = 0; r < OPEN_ROUNDS; r++) {
        for (const a of roundOrder(openApps, r)) {
          const s = await driveOpen(a.t, fake, replies, rate, OPEN_SECONDS, offset);
          offset += s.ack.length + s.errors.length;
          fake.clear();
          merge(result.samples.get(a.spec.kind)!, s);
        }
      }
      result.loadEnd = os.loadavg()[0];
      open.push(result);
      ctx.log(`slack: open loop at ${rate} req/s done (load ${round(result.loadStart)} → ${round(result.loadEnd)})`);
    }
    // BENCH_SLACK_TRACE=<file>: every loaded request's send time, ack and e2e, to see where the tail sits.
    if (process.env.BENCH_SLACK_TRACE) {
      fs.writeFileSync(process.env.BENCH_SLACK_TRACE, JSON.stringify(Object.fromEntries(apps.map((a) => [a.spec.kind, a.loaded.trace]))));
    }

    const errors = [
      ...apps.flatMap((a) => [...a.cold.errors, ...a.serial.errors, ...a.loaded.errors, ...a.roundStarts.errors]),
      ...open.flatMap((o) => [...o.samples.values()].flatMap((x) => x.errors)),
    ];
    for (const e of errors.slice(0, 5)) ctx.log(`slack: error: ${e}`);

    const p50 = (xs: number[]) => percentile(xs, 50);
    /** Requests an app handled in its loaded rounds: measured ones and the rounds' synchronized starts. */
    const handled = (a: Measured) => a.loaded.e2e.length + a.roundStarts.e2e.length;
    const ratio = (name: string, w: number[], b: number[], target: boolean): BenchRow => {
      const value = round(p50(w) / p50(b));
      return {
        suite: SUITE,
        name,
        n: Math.min(w.length, b.length),
        value,
        unit: '×',
        ...(target ? { target: '≤ 1.2×', pass: value <= 1.2 } : {}),
      };
    };
    const c = CONCURRENCY;
    const warden = byKind('warden');
    const bares = apps.filter((a) => a !== warden);
    /** Which warden/<bare> ratios carry the ≤ 1.2× target (the static app does no I/O: its e2e is info). */
    const gated = (bare: Measured, what: 'ack' | 'e2e') => bare.spec.kind === 'bare-sql' || (bare.spec.kind === 'bare' && what === 'ack');
    const ratios = (which: 'loaded' | 'serial', at: string, withTargets: boolean): BenchRow[] =>
      bares.flatMap((b) =>
        (['ack', 'e2e'] as const).map((what) =>
          ratio(`overhead ${what} p50 warden/${b.spec.short} ${at}`, warden[which][what], b[which][what], withTargets && gated(b, what)),
        ),
      );
    const rssName = (a: Measured) => `${a.spec.label} RSS max under load${inProcess ? ' (whole bench process)' : ''}`;

    const rows: BenchRow[] = [
      ...apps.flatMap((a) => [
        latencyRow(SUITE, `${a.spec.label} ack @${c}`, a.loaded.ack, a === warden ? { p: 99, ms: 100 } : undefined),
        latencyRow(SUITE, `${a.spec.label} ${a.spec.e2e} @${c}`, a.loaded.e2e),
      ]),
      ...ratios('loaded', `@${c}`, true),
      // Each round's synchronized start, apart: 50 requests arriving in the same instant queue
      // behind one another (the "cold burst" rows show the same on a just-started app).
      ...apps.map((a) => latencyRow(SUITE, `${a.spec.label} ack, the ${c} requests starting each loaded round at once`, a.roundStarts.ack)),
      ...open.flatMap((o): BenchRow[] => {
        const w = o.samples.get('warden')!;
        const b = o.samples.get('bare-sql')!;
        const at = `open loop @${o.rate}/s`;
        const r = (x: number) => round(x);
        const late = Math.max(w.senderLateMs ?? 0, b.senderLateMs ?? 0);
        return [
          latencyRow(SUITE, `${at} warden ack`, w.ack),
          latencyRow(SUITE, `${at} bare bolt + same SQL ack`, b.ack),
          latencyRow(SUITE, `${at} warden e2e /users show`, w.e2e),
          latencyRow(SUITE, `${at} bare bolt + same SQL e2e`, b.e2e),
          { suite: SUITE, name: `${at} overhead e2e p50 warden/bare+sql`, n: Math.min(w.e2e.length, b.e2e.length), value: r(p50(w.e2e) / p50(b.e2e)), unit: '×', target: '≤ 1.2×', pass: p50(w.e2e) / p50(b.e2e) <= 1.2 },
          { suite: SUITE, name: `${at} overhead e2e p95 warden/bare+sql`, n: Math.min(w.e2e.length, b.e2e.length), value: r(percentile(w.e2e, 95) / percentile(b.e2e, 95)), unit: '×' },
          { suite: SUITE, name: `${at} ack p99 warden/bare+sql`, n: Math.min(w.ack.length, b.ack.length), value: r(percentile(w.ack, 99) / percentile(b.ack, 99)), unit: '×', target: '≤ 1.5×', pass: percentile(w.ack, 99) / percentile(b.ack, 99) <= 1.5 },
          { suite: SUITE, name: `${at} machine load (1 min) at start → end`, n: 1, value: r(o.loadEnd), unit: `runnable (start ${r(o.loadStart)})` },
          { suite: SUITE, name: `${at} sender behind schedule at worst`, n: 1, value: r(late), unit: 'ms' },
        ];
      }),
      ...apps.map((a) => latencyRow(SUITE, `${a.spec.label} ack, cold burst of ${c} after start`, a.cold.ack)),
      ...apps.flatMap((a) => [
        latencyRow(SUITE, `${a.spec.label} ack @1`, a.serial.ack),
        latencyRow(SUITE, `${a.spec.label} ${a.spec.e2e} @1`, a.serial.e2e),
      ]),
      ...ratios('serial', '@1', false),
      ...apps.map(
        (a): BenchRow => ({
          suite: SUITE,
          name: `${a.spec.label} throughput @${c}`,
          n: handled(a),
          value: round((handled(a) / a.loaded.wallMs) * 1000),
          unit: 'req/s',
        }),
      ),
      ...apps.flatMap((a): BenchRow[] => {
        const label = a.spec.label;
        const n = handled(a);
        const cpuMs = a.use.cpuMs;
        const rows: BenchRow[] = [];
        // The app process's CPU time per request (child mode), and how busy the load generator
        // (this process: HTTP client + FakeSlack) was while driving it.
        if (cpuMs !== undefined) {
          rows.push({ suite: SUITE, name: `${label} app CPU per request @${c}`, n, value: round(cpuMs / n), unit: 'ms CPU' });
          rows.push({ suite: SUITE, name: `${label} app busy under load @${c}`, n, value: round((cpuMs / a.loaded.wallMs) * 100), unit: '% of a core' });
        }
        rows.push({
          suite: SUITE,
          name: `load generator busy while driving ${label}`,
          n,
          value: round((a.generatorCpuMs / a.loaded.wallMs) * 100),
          unit: '% of a core',
        });
        return rows;
      }),
      ...(() => {
        // CPU time per request is the steadiest comparison on a shared machine: other
        // sessions' load stretches wall-clock latency, not the work each request costs.
        const w = warden.use.cpuMs;
        const b = byKind('bare-sql');
        if (w === undefined || b.use.cpuMs === undefined) return [];
        const value = round(w / handled(warden) / (b.use.cpuMs / handled(b)));
        return [{ suite: SUITE, name: `app CPU per request warden/bare+sql @${c}`, n: handled(warden), value, unit: '×' }];
      })(),
      ...apps.map(
        (a): BenchRow => ({
          suite: SUITE,
          name: rssName(a),
          n: a.loaded.ack.length,
          value: round(a.use.maxRss / MB),
          unit: `MB (idle ${round(a.rssBase / MB)})`,
          ...(a === warden ? { target: '< 200 MB', pass: a.use.maxRss < 200 * MB } : {}),
        }),
      ),
      {
        // Other work on the machine skews every latency here: say how busy it was.
        suite: SUITE,
        name: `machine load average (1 min) at end, ${os.cpus().length} cores`,
        n: 1,
        value: round(os.loadavg()[0]),
        unit: 'runnable',
      },
      {
        suite: SUITE,
        name: 'failed or wrong replies',
        n:
          apps.reduce((sum, a) => sum + a.cold.ack.length + a.serial.ack.length + a.loaded.ack.length + a.roundStarts.ack.length, 0) +
          open.reduce((sum, o) => sum + [...o.samples.values()].reduce((k, x) => k + x.ack.length, 0), 0) +
          errors.length,
        value: errors.length,
        unit: 'requests',
        target: '= 0',
        pass: errors.length === 0,
      },
    ];
    return rows;
  } finally {
    for (const t of targets.reverse()) await t.stop().catch((e) => ctx.log(`slack: stopping ${t.label}: ${(e as Error).message}`));
    entry?.cleanup?.();
    await fake.stop();
    await db.close();
  }
}
