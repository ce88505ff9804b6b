import { describe, expect, it } from 'vitest';
import { Masker, maskEmail, maskIp, maskText } from '../../src/services/masking.js';

describe('PII masking (seed: user***@***.com, 192.168.xxx.xxx)', () => {
  it('masks e-mails and IPs', () => {
    expect(maskEmail('username@company.com')).toBe('user***@***.com');
    expect(maskEmail('ab@x.org')).toBe('a***@***.org');
    expect(maskIp('192.168.1.20')).toBe('192.168.xxx.xxx');
    expect(maskIp('2001:db8:85a3::8a2e:370:7334')).toBe('2001:db8:xxxx::');
    expect(maskText('from 10.1.2.3 by bob@corp.io')).toBe('from 10.1.xxx.xxx by bo***@***.io');
  });
  it('is a no-op when anonymisation is off', () => {
    const m = new Masker(false);
    expect(m.email('bob@corp.io')).toBe('bob@corp.io');
    expect(m.ip('10.1.2.3')).toBe('10.1.2.3');
  });
});
