import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDuration, slackProblems } from '../../src/config.js';

describe('settings', () => {
  it('gives the documented defaults on an empty environment', () => {
    const c = loadConfig({});
    expect(c.PORT).toBe(3000);
    expect(c.SLACK_API_URL).toBe('https://slack.com/api/');
    expect(c.ANONYMIZE_AUDIT_LOGS).toBe(true);
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.FAILED_LOGIN_BURST_THRESHOLD).toBe(5);
    expect(c.FAILED_LOGIN_BURST_WINDOW).toBe(3600);
    expect(c.PROMOTION_TTL).toBe(7 * 86400);
    expect(c.AUDIT_RETENTION_DAYS).toBe(90);
  });

  it('lists every problem at once and never echoes a value', () => {
    const secret = 'zzz-super-secret-value';
    try {
      loadConfig({ PORT: 'eighty', SLACK_BOT_TOKEN: secret, DATABASE_URL: 'mysql://x', ANONYMIZE_AUDIT_LOGS: 'maybe', PROMOTION_TTL: 'soon' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const msg = (e as Error).message;
      for (const key of ['PORT', 'SLACK_BOT_TOKEN', 'DATABASE_URL', 'ANONYMIZE_AUDIT_LOGS', 'PROMOTION_TTL']) expect(msg).toContain(key);
      expect(msg).not.toContain(secret);
    }
  });

  it('names the Slack settings npm start is missing', () => {
    expect(slackProblems(loadConfig({})).join('\n')).toMatch(/SLACK_BOT_TOKEN[\s\S]*SLACK_SIGNING_SECRET/);
    expect(slackProblems(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1' }))).toEqual([]);
    expect(slackProblems(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's' }))).toEqual([]);
  });

  it('parses durations', () => {
    expect(parseDuration('90s')).toBe(90);
    expect(parseDuration('15m')).toBe(900);
    expect(parseDuration('7d')).toBe(604800);
    expect(parseDuration('7 days')).toBeUndefined();
  });
});
