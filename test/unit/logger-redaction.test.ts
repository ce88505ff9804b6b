import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, flatLineLogger, redactShapes, SECRET_SHAPES } from '../../src/logger.js';

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

describe('cheap paths of the logger (#15)', () => {
  it('the pre-scan never lets a line with a secret shape through: same output as running every pattern', () => {
    const corpus = [
      '{"msg":"slack request","requestId":"ab12cd34","kind":"command","id":"/users","outcome":"ok","durationMs":3}',
      'token XOXB-1111-2222-abcdefghij upper',
      'xoxp-1111-2222-abcdefghij',
      'xapp-1-A111-222-abc',
      'SG.abcdefghijk.lmnopqrstuvwxyz',
      'authorization: BEARER abcdefghijklmnopqrstuvwxyz',
      'postgres://warden:hunter2@db:5432/app',
      'REDIS://:secret-pw@cache:6379',
      '{"CODE":"123456"}',
      '{"totpCode": "1234 5678"}',
      '{"OTP":"12345678"}',
      'https://hooks.slack.com/actions/T1/123/abc',
      'mail jane.doe@example.com',
      'JANE@EXAMPLE.ORG',
      'nothing secret here at all',
    ];
    const everyPattern = (line: string) => SECRET_SHAPES.reduce((out, [re, repl]) => out.replace(re, repl), line);
    for (const line of corpus) expect(redactShapes(line), line).toBe(everyPattern(line));
    expect(redactShapes(corpus[0])).toBe(corpus[0]);
  });

  it('the flat request-line logger still hides top-level secret keys and secret shapes', () => {
    const { logger, text } = capture();
    const flat = flatLineLogger(logger, { component: 'request' });
    flat.info({ requestId: 'r1', token: 't0ken-value', note: 'xoxb-1111-2222-abcdefghij', email: 'jane@example.com' }, 'slack request');
    const out = text();
    expect(out).not.toMatch(/t0ken-value|xoxb-1111|jane@example/);
    expect(JSON.parse(out)).toMatchObject({ component: 'request', requestId: 'r1', msg: 'slack request' });
  });
});
