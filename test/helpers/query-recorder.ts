import type { Db, Queryable } from '../../src/db/index.js';

/**
 * A Queryable that records every statement a service sends, so tests can EXPLAIN exactly
 * that SQL and the benchmark can replay it directly next to the service call.
 */
export class QueryRecorder implements Queryable {
  calls: { sql: string; params: unknown[] }[] = [];
  constructor(private readonly inner: Db) {}
  query<T>(sql: string, params: unknown[] = []) {
    this.calls.push({ sql, params });
    return this.inner.query<T>(sql, params);
  }
  exec(sql: string) {
    return this.inner.exec(sql);
  }
}
