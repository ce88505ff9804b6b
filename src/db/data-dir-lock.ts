import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * One writer per embedded database. PGlite has no lock of its own: two processes that
 * open the same directory each keep their own copy in memory and the last one to close
 * overwrites the other's changes. The console and `npm start` therefore take this lock
 * (a file created with O_EXCL in the data directory) before opening the database. A
 * second process reads who holds it: a console offers a socket that scripted commands
 * are sent to; anything else is refused with a message naming the holder.
 */

export interface LockHolder {
  pid: number;
  /** `npm run console` or `npm start`. */
  program: string;
  /** OS user that started the holder. */
  user: string;
  since: string;
  /** Unix socket that accepts scripted commands (consoles only). */
  socket?: string;
}

export interface DataDirLock {
  readonly file: string;
  readonly holder: LockHolder;
  release(): void;
}

export type LockResult = { ok: true; lock: DataDirLock } | { ok: false; holder: LockHolder; file: string };

const LOCK_FILE = 'warden.lock';

/** Unix socket paths are limited to ~104 bytes; long data directories get one under the temp dir. */
export function socketPathFor(dataDir: string): string {
  const inDir = path.join(path.resolve(dataDir), 'warden.sock');
  if (Buffer.byteLength(inDir) < 100) return inDir;
  const hash = crypto.createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  return path.join(os.tmpdir(), `warden-${hash}.sock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const h = JSON.parse(fs.readFileSync(file, 'utf8')) as LockHolder;
    return typeof h.pid === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

export function acquireDataDirLock(dataDir: string, program: string, socket?: string): LockResult {
  const dir = path.resolve(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const holder: LockHolder = { pid: process.pid, program, user: osUser(), since: new Date().toISOString(), socket };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, JSON.stringify(holder));
      fs.closeSync(fd);
      return {
        ok: true,
        lock: {
          file,
          holder,
          release() {
            // Only our own lock is removed (a stale-lock cleaner may have replaced it).
            if (readHolder(file)?.pid === process.pid) fs.rmSync(file, { force: true });
          },
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const other = readHolder(file);
    if (other && alive(other.pid)) return { ok: false, holder: other, file };
    if (!other) {
      // Being written right now by another starter, or garbage: give it a moment, then judge.
      const written = fs.statSync(file, { throwIfNoEntry: false });
      if (written && Date.now() - written.mtimeMs < 2000) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
        continue;
      }
    }
    // The holder died without releasing (kill -9, power loss): move its lock aside, then retry.
    // rename is atomic, so of two starters cleaning up at once only one moves it.
    const aside = `${file}.stale-${process.pid}`;
    try {
      fs.renameSync(file, aside);
      const moved = readHolder(aside);
      if (moved && moved.pid !== other?.pid && alive(moved.pid)) {
        // We moved a lock that a live process had just taken: put it back.
        fs.renameSync(aside, file);
        return { ok: false, holder: moved, file };
      }
      fs.rmSync(aside, { force: true });
      if (other?.socket) fs.rmSync(other.socket, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  const other = readHolder(file);
  return { ok: false, holder: other ?? { pid: 0, program: 'unknown', user: 'unknown', since: '' }, file };
}

export function describeHolder(h: LockHolder): string {
  return `${h.program} (pid ${h.pid}, user ${h.user}, since ${h.since.replace('T', ' ').slice(0, 19)} UTC)`;
}

/** The OS user, for the lock and for break-glass audit rows. */
export function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? 'unknown';
  }
}
