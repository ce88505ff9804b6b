import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './app.js';

/**
 * A PostgreSQL cluster of the test's own (initdb into a temp dir, its own port), for tests
 * that stop or restart the server. Never restart the shared test cluster: other tests run on it.
 * Needs the server binaries (CI and the dev machine have them); the suite that uses it is
 * skipped when DATABASE_URL is unset, like every real-PostgreSQL suite.
 */
export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
    private readonly runAs: string[],
  ) {}

  static async start(): Promise<PrivatePostgres> {
    const bin = findBin();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-private-pg-'));
    const runAs = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
    if (runAs.length) execFileSync('chown', ['postgres', dir]);
    const pg = new PrivatePostgres(dir, await freePort(), bin, runAs);
    pg.run('initdb', ['-D', pg.data, '-U', 'postgres', '-A', 'trust', '--no-sync']);
    pg.ctl('start');
    return pg;
  }

  get data(): string {
    return path.join(this.dir, 'data');
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** `pg_ctl restart -m fast`: every backend terminated, the server back within a second or two. */
  restart(): void {
    this.ctl('restart');
  }

  stopServer(): void {
    this.ctl('stop');
  }

  startServer(): void {
    this.ctl('start');
  }

  async destroy(): Promise<void> {
    try {
      this.ctl('stop');
    } catch {
      /* already stopped */
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private ctl(action: 'start' | 'stop' | 'restart') {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`;
    this.run('pg_ctl', ['-D', this.data, '-l', path.join(this.dir, 'pg.log'), '-w', '-m', 'fast', '-o', opts, action]);
  }

  private run(tool: string, args: string[]) {
    const cmd = [...this.runAs, path.join(this.bin, tool), ...args];
    execFileSync(cmd[0], cmd.slice(1), { stdio: 'pipe' });
  }
}

function findBin(): string {
  const candidates = fs.existsSync('/usr/lib/postgresql')
    ? fs
        .readdirSync('/usr/lib/postgresql')
        .sort((a, b) => Number(b) - Number(a))
        .map((v) => `/usr/lib/postgresql/${v}/bin`)
    : [];
  const bin = candidates.find((d) => fs.existsSync(path.join(d, 'initdb')));
  if (!bin) throw new Error('PostgreSQL server binaries not found (apt-get install -y postgresql)');
  return bin;
}
