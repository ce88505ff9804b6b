import crypto from 'node:crypto';
import { MemoryStore, RedisStore, type Store } from '../../src/store/index.js';

/** Redis at REDIS_URL with a key prefix of its own (CI), otherwise the in-process store. */
export function createTestStore(): Store {
  const url = process.env.REDIS_URL;
  return url ? RedisStore.connect(url, `warden-test:${crypto.randomBytes(4).toString('hex')}:`) : new MemoryStore();
}
