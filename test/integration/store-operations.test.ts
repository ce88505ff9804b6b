import net from 'node:net';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { compareVersions, MemoryStore, RedisStore, StoreVersionError } from '../../src/store/index.js';
import { createTestStore } from '../helpers/store.js';

/** Issue 13: the in-process store stays bounded; Redis older than Warden's commands is refused at start. */

describe('in-process store under churn', () => {
  afterAll(() => vi.useRealTimers());

  it('holds only live keys: 100,000 one-second keys written over time do not accumulate', async () => {
    vi.useFakeTimers();
    const store = new MemoryStore({ sweepEvery: 1000 });
    try {
      let maxSize = 0;
      // 100 seconds of traffic at 1,000 requests a second, each writing a dedupe key that lives 1 s.
      for (let second = 0; second < 100; second++) {
        for (let i = 0; i < 1000; i++) await store.setIfAbsent(`dedupe:${second}:${i}`, '1', 1);
        maxSize = Math.max(maxSize, store.size);
        vi.advanceTimersByTime(1000);
      }
      // At most about two seconds' worth (the live second plus one awaiting the next sweep).
      expect(maxSize).toBeLessThanOrEqual(2000);
      // A quiet process is swept by its timer.
      vi.advanceTimersByTime(61_000);
      expect(store.size).toBe(0);
    } finally {
      await store.close();
      vi.useRealTimers();
    }
  });

  it('still answers as before: counters keep their first TTL, expired keys read as absent', async () => {
    vi.useFakeTimers();
    const store = new MemoryStore();
    try {
      expect(await store.incr('c', 10)).toBe(1);
      vi.advanceTimersByTime(6000);
      expect(await store.incr('c', 10)).toBe(2);
      vi.advanceTimersByTime(5000);
      expect(await store.incr('c', 10)).toBe(1);
      await store.set('k', 'v', 1);
      vi.advanceTimersByTime(1001);
      expect(await store.get('k')).toBeNull();
    } finally {
      await store.close();
      vi.useRealTimers();
    }
  });
});

describe('Redis', () => {
  it.runIf(!!process.env.REDIS_URL)('counters get their TTL on the first increment only (6.2-compatible SET NX EX + INCR)', async () => {
    const store = createTestStore() as RedisStore;
    try {
      expect(await store.incr('ttl-counter', 100)).toBe(1);
      expect(await store.incr('ttl-counter', 5)).toBe(2);
      const ttl = await store.redis.ttl('ttl-counter');
      expect(ttl).toBeGreaterThan(90);
      expect(await store.checkVersion()).toMatch(/^\d+\.\d+/);
    } finally {
      await store.redis.del('ttl-counter');
      await store.close();
    }
  });

  /** A RESP server that says it is Redis 6.0 (INFO) and answers OK to everything else. */
  async function oldRedis(version: string): Promise<{ url: string; close: () => Promise<void> }> {
    const server = net.createServer((sock) => {
      sock.on('data', (d) => {
        for (const cmd of String(d).split('*').slice(1)) {
          if (/\r\ninfo\r\n/i.test(`\r\n${cmd}`)) {
            const body = `# Server\r\nredis_version:${version}\r\nloading:0\r\n`;
            sock.write(`$${Buffer.byteLength(body)}\r\n${body}\r\n`);
          } else sock.write('+OK\r\n');
        }
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    return { url: `redis://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
  }

  it('refuses Redis older than 6.2 with a message that names the version and the way out', async () => {
    const fake = await oldRedis('6.0.16');
    const store = RedisStore.connect(fake.url);
    try {
      const err = await store.checkVersion().catch((e) => e);
      expect(err).toBeInstanceOf(StoreVersionError);
      expect(err.message).toContain('Redis 6.0.16 at REDIS_URL is too old');
      expect(err.message).toContain('6.2.0 or newer');
    } finally {
      await store.close();
      await fake.close();
    }
  });

  it('accepts 6.2 and 7', async () => {
    for (const v of ['6.2.14', '7.2.4']) {
      const fake = await oldRedis(v);
      const store = RedisStore.connect(fake.url);
      try {
        expect(await store.checkVersion()).toBe(v);
      } finally {
        await store.close();
        await fake.close();
      }
    }
    expect(compareVersions('6.2.0', '6.10.0')).toBe(-1);
    expect(compareVersions('7.0', '7.0.0')).toBe(0);
  });
});
