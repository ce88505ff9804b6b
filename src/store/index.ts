import { Redis } from 'ioredis';

/**
 * Short-lived shared state: rate-limit counters, one-time values, locks and dedupe keys.
 * Redis when REDIS_URL is set (shared by replicas); otherwise an in-process map, which
 * is only correct for a single instance.
 */
/** The store (Redis) could not be reached; shown to users as an outage, never as a bug. */
export class StoreUnavailableError extends Error {
  constructor(override readonly cause: unknown) {
    super(`store unavailable: ${(cause as Error)?.message ?? cause}`);
    this.name = 'StoreUnavailableError';
  }
}

export interface Store {
  readonly kind: 'redis' | 'memory';
  /** Increments a counter; the first increment starts its TTL. Returns the new value. */
  incr(key: string, ttlSeconds: number): Promise<number>;
  /** Sets the key only if absent. True when this call set it (a lock or a first use). */
  setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  get(key: string): Promise<string | null>;
  del(key: string): Promise<void>;
  ping(): Promise<void>;
  /** Cache hit rate in percent from the server's statistics, when it keeps any. */
  hitRate(): Promise<{ hits: number; misses: number; rate: number | null } | null>;
  close(): Promise<void>;
}

/** Oldest Redis Warden's commands work on (SET … EX … NX, MULTI); checked at start. */
export const MIN_REDIS_VERSION = '6.2.0';

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private data = new Map<string, { value: string; expires: number }>();
  private writes = 0;
  private readonly sweeper: NodeJS.Timeout;

  /**
   * Expired keys are dropped when read, by a sweep every `sweepEvery` writes (each Slack
   * request writes a dedupe key, so a busy process sweeps often) and by a timer for a quiet
   * one. Without it every key ever written stayed in memory.
   */
  constructor(private readonly opts: { sweepEvery?: number; sweepMs?: number } = {}) {
    this.sweeper = setInterval(() => this.sweep(), opts.sweepMs ?? 60_000);
    this.sweeper.unref();
  }

  /** Keys held, expired or not (for tests and the bound). */
  get size(): number {
    return this.data.size;
  }

  /** Drops every expired key. */
  sweep(now = Date.now()): void {
    for (const [k, e] of this.data) if (e.expires <= now) this.data.delete(k);
  }

  private wrote(): void {
    if (++this.writes >= (this.opts.sweepEvery ?? 1000)) {
      this.writes = 0;
      this.sweep();
    }
  }

  private live(key: string) {
    const e = this.data.get(key);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.data.delete(key);
      return undefined;
    }
    return e;
  }

  async incr(key: string, ttlSeconds: number) {
    const e = this.live(key);
    const n = (e ? Number(e.value) : 0) + 1;
    this.data.set(key, { value: String(n), expires: e ? e.expires : Date.now() + ttlSeconds * 1000 });
    this.wrote();
    return n;
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    if (this.live(key)) return false;
    this.data.set(key, { value, expires: Date.now() + ttlSeconds * 1000 });
    this.wrote();
    return true;
  }

  async set(key: string, value: string, ttlSeconds: number) {
    this.data.set(key, { value, expires: Date.now() + ttlSeconds * 1000 });
    this.wrote();
  }

  async get(key: string) {
    return this.live(key)?.value ?? null;
  }

  async del(key: string) {
    this.data.delete(key);
  }

  async ping() {}

  async hitRate() {
    return null;
  }

  async close() {
    clearInterval(this.sweeper);
    this.data.clear();
  }
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  constructor(readonly redis: Redis) {}

  static connect(url: string, keyPrefix = 'warden:'): RedisStore {
    const redis = new Redis(url, {
      keyPrefix,
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      enableOfflineQueue: true,
      // Commands issued in the same tick leave in one write (under load: one syscall for many
      // requests' duplicate checks instead of one each, #15). Order is kept.
      enableAutoPipelining: true,
      // Keep retrying in the background: a Redis outage is reported by /readyz and /health.
      retryStrategy: (times) => Math.min(times * 200, 5000),
    });
    redis.on('error', () => {});
    return new RedisStore(redis);
  }

  /** Every Redis call goes through here, so a Redis outage surfaces as one error type. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    // While ioredis is reconnecting after a loss, fail at once instead of queueing the
    // command behind growing retry delays: callers answer Slack within 3 seconds.
    if (this.redis.status === 'reconnecting' || this.redis.status === 'end' || this.redis.status === 'close') {
      throw new StoreUnavailableError(new Error(`Redis connection is ${this.redis.status}`));
    }
    try {
      return await fn();
    } catch (e) {
      throw new StoreUnavailableError(e);
    }
  }

  async incr(key: string, ttlSeconds: number) {
    return this.call(async () => {
      // SET NX EX creates the counter with its TTL only when absent; INCR keeps the TTL. (EXPIRE … NX
      // would need Redis 7; this works from 6.2, and the pair is atomic in MULTI.)
      const res = (await this.redis.multi().set(key, '0', 'EX', ttlSeconds, 'NX').incr(key).exec()) as [unknown, number][];
      return res[1][1];
    });
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    return this.call(async () => (await this.redis.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK');
  }

  async set(key: string, value: string, ttlSeconds: number) {
    await this.call(() => this.redis.set(key, value, 'EX', ttlSeconds));
  }

  async get(key: string) {
    return this.call(() => this.redis.get(key));
  }

  async del(key: string) {
    await this.call(() => this.redis.del(key));
  }

  async ping() {
    await this.call(() => this.redis.ping());
  }

  async hitRate() {
    const info = await this.call(() => this.redis.info('stats'));
    const hits = Number(/keyspace_hits:(\d+)/.exec(info)?.[1] ?? 0);
    const misses = Number(/keyspace_misses:(\d+)/.exec(info)?.[1] ?? 0);
    return { hits, misses, rate: hits + misses > 0 ? (100 * hits) / (hits + misses) : null };
  }

  /**
   * Refuses a Redis older than MIN_REDIS_VERSION with a message that says so. Returns the
   * server's version. A Redis that cannot be reached now is not refused: /readyz reports it.
   */
  async checkVersion(): Promise<string | undefined> {
    let info: string;
    try {
      info = await Promise.race([
        this.redis.info('server'),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timed out')), 3000).unref()),
      ]);
    } catch {
      return undefined;
    }
    const version = /redis_version:([\d.]+)/.exec(info)?.[1];
    if (version && compareVersions(version, MIN_REDIS_VERSION) < 0) {
      throw new StoreVersionError(
        `Redis ${version} at REDIS_URL is too old: Warden needs Redis ${MIN_REDIS_VERSION} or newer ` +
          '(its one-time codes, locks and rate limits use SET … EX … NX and MULTI). Upgrade Redis, or unset REDIS_URL for a single instance.',
      );
    }
    return version;
  }

  async close() {
    this.redis.disconnect();
  }
}

export class StoreVersionError extends Error {}

/** Compares dotted versions numerically: -1, 0 or 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return Math.sign(d);
  }
  return 0;
}

export function openStore(url?: string, keyPrefix?: string): Store {
  return url ? RedisStore.connect(url, keyPrefix) : new MemoryStore();
}
