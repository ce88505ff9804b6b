import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { boltLogger } from '../../src/slack/app.js';

describe('logs at debug level (issue 11)', () => {
  it('never write a full e-mail or a response URL, and Bolt bodies are left out', async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const logger = createLogger({ level: 'debug', destination });
    const bolt = boltLogger(logger);
    bolt.debug('http request body: {"view":{"state":{"values":{"email":{"value":{"value":"bob.builder@example.com"}}}}}}');
    bolt.debug('apiCall(\'chat.postMessage\') start');
    logger.debug({ response_url: 'https://hooks.slack.com/actions/T1/123/AbCdEf', who: 'carol.secret@corp.io' }, 'answered');
    logger.info('sent to bob.builder@example.com via https://hooks.slack.com/commands/T1/9/xyz');
    await new Promise((r) => setTimeout(r, 20));
    const all = lines.join('');
    expect(all).not.toContain('bob.builder@example.com');
    expect(all).not.toContain('carol.secret@corp.io');
    expect(all).not.toContain('AbCdEf');
    expect(all).not.toContain('/commands/T1/9/xyz');
    expect(all).toContain('[body omitted]');
    expect(all).toContain("apiCall('chat.postMessage') start");
  });
});
