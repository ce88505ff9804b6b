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

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private data = new Map<string, { value: string; expires: number }>();

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
    return n;
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    if (this.live(key)) return false;
    this.data.set(key, { value, expires: Date.now() + ttlSeconds * 1000 });
    return true;
  }

  async set(key: string, value: string, ttlSeconds: number) {
    this.data.set(key, { value, expires: Date.now() + ttlSeconds * 1000 });
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
      const [[, n]] = (await this.redis.multi().incr(key).expire(key, ttlSeconds, 'NX').exec()) as [[null, number]];
      return n;
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

  async close() {
    this.redis.disconnect();
  }
}

export function openStore(url?: string, keyPrefix?: string): Store {
  return url ? RedisStore.connect(url, keyPrefix) : new MemoryStore();
}
