import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';

/**
 * One small interface over PostgreSQL (pg Pool) and the embedded PGlite, so that
 * services never know which one they run on. Only parameterised SQL goes through it.
 */
export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Queryable {
  query<T = Record<string, any>>(sql: string, params?: unknown[]): Promise<QueryResult<T>>;
  /** Several statements without parameters (migrations only). */
  exec(sql: string): Promise<void>;
}

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
  max: number;
}

export interface Db extends Queryable {
  readonly kind: 'pg' | 'pglite';
  /** Runs fn in one transaction: committed when it resolves, rolled back when it throws. */
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel; returns a function that stops listening. `onLost` is told at once when
   * the listening connection drops (notifications may be missed until it is back); when it is
   * back, `onPayload('')` says "anything may have changed meanwhile".
   */
  listen(channel: string, onPayload: (payload: string) => void, opts?: { onLost?: () => void }): Promise<() => Promise<void>>;
  poolStats(): PoolStats;
  close(): Promise<void>;
  /**
   * PostgreSQL only: `COPY (select) TO STDOUT` (text format) streamed as it arrives. COPY takes
   * no bind parameters, so values travel as transaction-local settings — `settings` are set
   * with set_config($1, $2, true) and the select reads them with current_setting(name): the
   * statement text never contains a value.
   */
  copyOut?(select: string, settings: Record<string, string>): AsyncIterable<Buffer>;
}

// bigint (int8) and numeric come back as strings by default; our ids and counts fit in a double.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export class PgDb implements Db {
  readonly kind = 'pg' as const;
  private listenClient?: pg.Client;
  private listenConnecting?: Promise<pg.Client>;
  private listeners = new Map<string, Set<(p: string) => void>>();
  private lostListeners = new Set<() => void>();
  private closed = false;
  private reconnectDelayMs = 500;

  constructor(
    readonly pool: pg.Pool,
    private readonly connectionString?: string,
  ) {}

  static connect(url: string, max = 10): PgDb {
    const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000, idleTimeoutMillis: 30000 });
    // An idle client losing its connection must not crash the process; the next query reports it.
    pool.on('error', () => {});
    return new PgDb(pool, url);
  }

  async query<T>(sql: string, params: unknown[] = []): Promise<QueryResult<T>> {
    const r = await this.pool.query(sql, params as any[]);
    return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
  }

  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }

  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A checked-out client has no listener of the pool's: without this one, the backend being
    // terminated (restart, pg_terminate_backend) mid-transaction emits an unhandled 'error' and
    // kills the process. The failure reaches fn through its pending query instead; the broken
    // client is then destroyed, not returned to the pool.
    let broken: Error | undefined;
    const onError = (e: Error) => {
      broken = e;
    };
    client.on('error', onError);
    // Once the connection is lost, report why (e.g. "terminating connection due to
    // administrator command"), not pg's generic "not queryable".
    const run = async (sql: string, params?: unknown[]) => {
      if (broken) throw broken;
      try {
        return await client.query(sql, params as any[]);
      } catch (e) {
        throw broken ?? e;
      }
    };
    const q: Queryable = {
      query: async <R>(sql: string, params: unknown[] = []) => {
        const r = await run(sql, params);
        return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
      },
      exec: async (sql: string) => {
        await run(sql);
      },
    };
    try {
      await run('BEGIN');
      const result = await fn(q);
      await run('COMMIT');
      return result;
    } catch (e) {
      if (!broken) await client.query('ROLLBACK').catch((err: Error) => (broken = err));
      throw e;
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  async *copyOut(select: string, settings: Record<string, string>): AsyncGenerator<Buffer> {
    const client = await this.pool.connect();
    // A checked-out client losing its connection emits 'error': the stream below reports it.
    const onError = () => {};
    client.on('error', onError);
    let clean = false;
    try {
      await client.query('BEGIN READ ONLY');
      for (const [name, value] of Object.entries(settings)) await client.query('SELECT set_config($1, $2, true)', [name, value]);
      const stream = client.query(copyTo(`COPY (${select}) TO STDOUT`));
      for await (const chunk of stream) yield chunk as Buffer;
      await client.query('COMMIT');
      clean = true;
    } finally {
      client.off('error', onError);
      // Stopped half-way (the consumer broke off, or an error): the connection may still be
      // in COPY; it is closed rather than returned to the pool.
      client.release(clean ? undefined : true);
    }
  }

  /**
   * LISTEN on a dedicated connection (outside the pool). When that connection drops
   * (database restart, network), it is re-opened with backoff and every channel is
   * LISTENed again; each listener is then called once with an empty payload so it can
   * catch up on what it may have missed meanwhile.
   */
  async listen(channel: string, onPayload: (payload: string) => void, opts: { onLost?: () => void } = {}): Promise<() => Promise<void>> {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`bad channel name ${channel}`);
    let set = this.listeners.get(channel);
    const isNew = !set;
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(onPayload);
    const onLost = opts.onLost;
    if (onLost) this.lostListeners.add(onLost);
    try {
      const client = await this.listenConnection();
      if (isNew) await client.query(`LISTEN ${channel}`);
    } catch (e) {
      // Not listening: forget the callbacks (and the channel, so a later call LISTENs again).
      set.delete(onPayload);
      if (!set.size) this.listeners.delete(channel);
      if (onLost) this.lostListeners.delete(onLost);
      throw e;
    }
    return async () => {
      set!.delete(onPayload);
      if (onLost) this.lostListeners.delete(onLost);
    };
  }

  private listenConnection(): Promise<pg.Client> {
    if (this.listenClient) return Promise.resolve(this.listenClient);
    this.listenConnecting ??= (async () => {
      const client = this.connectionString ? new pg.Client({ connectionString: this.connectionString }) : new pg.Client();
      client.on('notification', (n) => {
        for (const cb of this.listeners.get(n.channel) ?? []) cb(n.payload ?? '');
      });
      const lost = () => {
        if (this.listenClient !== client) return;
        this.listenClient = undefined;
        client.removeAllListeners('end');
        client.end().catch(() => {});
        // Caches that rely on notifications must stop trusting them now, not at the reconnect.
        for (const cb of this.lostListeners) cb();
        this.scheduleReconnect();
      };
      client.on('error', lost);
      client.on('end', lost);
      try {
        await client.connect();
        for (const channel of this.listeners.keys()) await client.query(`LISTEN ${channel}`);
      } catch (e) {
        client.removeAllListeners('end');
        await client.end().catch(() => {});
        throw e;
      } finally {
        this.listenConnecting = undefined;
      }
      this.listenClient = client;
      this.reconnectDelayMs = 500;
      return client;
    })();
    return this.listenConnecting;
  }

  private scheduleReconnect() {
    if (this.closed || !this.listeners.size) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 30_000);
    setTimeout(() => {
      if (this.closed) return;
      this.listenConnection().then(
        () => {
          for (const set of this.listeners.values()) for (const cb of set) cb('');
        },
        () => this.scheduleReconnect(),
      );
    }, delay).unref();
  }

  poolStats(): PoolStats {
    return {
      total: this.pool.totalCount,
      idle: this.pool.idleCount,
      waiting: this.pool.waitingCount,
      max: this.pool.options.max ?? 10,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.listenClient;
    this.listenClient = undefined;
    if (client) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
    }
    await this.pool.end();
  }
}

type PGliteInstance = import('@electric-sql/pglite').PGlite;

export class PGliteDb implements Db {
  readonly kind = 'pglite' as const;
  constructor(readonly lite: PGliteInstance) {}

  /** dataDir undefined → in memory (tests). */
  static async open(dataDir?: string): Promise<PGliteDb> {
    const { PGlite } = await import('@electric-sql/pglite');
    if (dataDir) fs.mkdirSync(path.resolve(dataDir), { recursive: true });
    const lite = await PGlite.create(dataDir ? path.resolve(dataDir) : undefined, {
      parsers: { 20: (v: string) => Number(v), 1700: (v: string) => Number(v) },
    });
    return new PGliteDb(lite);
  }

  async query<T>(sql: string, params: unknown[] = []): Promise<QueryResult<T>> {
    const r = await this.lite.query<T>(sql, params as any[]);
    return { rows: r.rows, rowCount: r.affectedRows || r.rows.length };
  }

  async exec(sql: string): Promise<void> {
    await this.lite.exec(sql);
  }

  async tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.lite.transaction(async (t) =>
      fn({
        query: async <R>(sql: string, params: unknown[] = []) => {
          const r = await t.query<R>(sql, params as any[]);
          return { rows: r.rows, rowCount: r.affectedRows || r.rows.length };
        },
        exec: async (sql: string) => {
          await t.exec(sql);
        },
      }),
    );
  }

  /** In-process: notifications cannot be lost, so `onLost` is never called. */
  async listen(channel: string, onPayload: (payload: string) => void, _opts?: { onLost?: () => void }): Promise<() => Promise<void>> {
    const unsub = await this.lite.listen(channel, onPayload);
    return async () => unsub();
  }

  poolStats(): PoolStats {
    // One embedded connection, always "in use" by this process.
    return { total: 1, idle: 0, waiting: 0, max: 1 };
  }

  async close(): Promise<void> {
    if (!this.lite.closed) await this.lite.close();
  }
}

export async function openDb(opts: { url?: string; dataDir?: string; poolMax?: number }): Promise<Db> {
  if (opts.url) return PgDb.connect(opts.url, opts.poolMax);
  return PGliteDb.open(opts.dataDir);
}
