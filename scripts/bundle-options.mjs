// esbuild options of the compiled entry point (scripts/build.mjs) and of the Slack benchmark's
// app (bench/suites/slack.ts), so that the benchmark measures what the image runs.
//
// Warden and most of its packages become one ES module: Node reads and links one file instead of
// ~90 modules of ours and a few hundred of node_modules. #15, 12 alternated cold starts each
// (`npm run bench startup` method): spawn → /healthz p50 972 → 737 ms, p95 1171 → 895 ms,
// bare Bolt 362 / 461 ms in the same run. The price, measured by the Slack suite: RSS under the
// 50-concurrent load 160 → 180 MB. Left as imports from node_modules:
//  - @slack/* (Bolt, its HTTP and Socket Mode receivers, the Web API client, and what they
//    load): the code the tests run, unchanged; bundling it too saved ~120 ms more but would
//    put Socket Mode's WebSocket client into a form no test runs;
//  - @electric-sql/pglite: loads its WebAssembly and data files from its own folder;
//  - pino (and pino-pretty): starts transports as worker threads from files of its own folder;
//  - pg-native: an optional native module pg asks for only when told to.
// Packages written as CommonJS may call require() or read __dirname/__filename; in an ES module
// those are given from the module's own URL (Node ≥ 20.11 has import.meta.dirname/filename).
export const bundleOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['@slack/*', '@electric-sql/pglite', 'pino', 'pino-pretty', 'pg-native'],
  define: { __dirname: 'import.meta.dirname', __filename: 'import.meta.filename' },
  banner: { js: "import { createRequire as __wardenCreateRequire } from 'node:module'; const require = __wardenCreateRequire(import.meta.url);" },
  logLevel: 'warning',
};
