import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';

/** Issue 13: error codes stay readable; secrets are hidden by key and, where keys can't tell, by shape. */
function capture() {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk, _e, cb) {
        lines.push(String(chunk));
        cb();
      },
    }),
  });
  return { logger, text: () => lines.join('') };
}

describe('log redaction', () => {
  it('keeps err.code readable (ECONNREFUSED, SQLSTATEs, Slack error codes)', () => {
    const { logger, text } = capture();
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    logger.error({ err, pg: { code: '23505' }, slack: { code: 'slack_webapi_platform_error' } }, 'failed');
    const line = JSON.parse(text());
    expect(line.err.code).toBe('ECONNREFUSED');
    expect(line.pg.code).toBe('23505');
    expect(line.slack.code).toBe('slack_webapi_platform_error');
  });

  it('hides one-time codes, tokens and URL passwords by their shape, anywhere in the line', () => {
    const { logger, text } = capture();
    logger.warn(
      {
        code: '123456',
        form: { code: '1234 5678' },
        note: 'retrying with xoxb-1111-2222-abcdefghij and xapp-1-A111-222-abc',
        err: new Error('connect to postgres://warden:hunter2-password@db.internal:5432/app failed'),
        header: 'Bearer abcdefghijklmnopqrstuvwxyz',
        mail: 'key SG.abcdefghijk.lmnopqrstuvwxyz',
      },
      'redis://:redis-secret@cache:6379 unreachable',
    );
    const out = text();
    for (const secret of ['123456', '1234 5678', 'xoxb-1111', 'xapp-1-A111', 'hunter2-password', 'abcdefghijklmnopqrstuvwxyz', 'SG.abcdefghijk', 'redis-secret']) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain('db.internal:5432/app');
    expect(out).toContain('cache:6379 unreachable');
  });

  it('hides secrets by key name as before', () => {
    const { logger, text } = capture();
    logger.info({ token: 't0ken-value', user: { password: 'pw-value', totp_secret: 'JBSWY3DP' } }, 'x');
    expect(text()).not.toMatch(/t0ken-value|pw-value|JBSWY3DP/);
  });
});
