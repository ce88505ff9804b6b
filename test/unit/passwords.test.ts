import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  generateResetToken,
  generateTempPassword,
  hashPassword,
  PBKDF2_ITERATIONS,
  verifyPassword,
} from '../../src/services/passwords.js';

// Made by werkzeug 3.1 itself:
// python3 -c "from werkzeug.security import generate_password_hash as g; print(g('Correct-Horse-9', method='pbkdf2:sha256:600000'))"
const WERKZEUG_HASH =
  'pbkdf2:sha256:600000$rikqTTmc4AR2OCqM$5919186725d357be5829959c3491bf53f2d487096566c9c80cbd235cee1f1502';

function werkzeugAvailable(): boolean {
  try {
    execFileSync('python3', ['-c', 'import werkzeug.security'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('werkzeug-compatible password hashes', () => {
  it('accepts a hash werkzeug generated, and only for the right password', async () => {
    expect(await verifyPassword('Correct-Horse-9', WERKZEUG_HASH)).toBe(true);
    expect(await verifyPassword('correct-horse-9', WERKZEUG_HASH)).toBe(false);
  });

  it('writes pbkdf2:sha256:600000$<16-char salt>$<64 hex> with a fresh salt each time', async () => {
    const a = await hashPassword('s3cret!');
    const b = await hashPassword('s3cret!');
    expect(a).toMatch(/^pbkdf2:sha256:600000\$[A-Za-z0-9]{16}\$[0-9a-f]{64}$/);
    expect(PBKDF2_ITERATIONS).toBe(600_000);
    expect(a).not.toBe(b);
    expect(await verifyPassword('s3cret!', a)).toBe(true);
    expect(await verifyPassword('s3cret?', a)).toBe(false);
  });

  it('refuses hashes it does not understand instead of throwing', async () => {
    for (const h of ['', 'plain', 'scrypt:32768:8:1$abc$def', 'pbkdf2:md5:1$a$00', 'pbkdf2:sha256:99999999999$a$00']) {
      expect(await verifyPassword('x', h), h).toBe(false);
    }
  });

  it.skipIf(!werkzeugAvailable())('werkzeug check_password_hash accepts what Warden writes', async () => {
    const pw = generateTempPassword();
    const hash = await hashPassword(pw);
    const out = execFileSync(
      'python3',
      ['-c', 'import sys; from werkzeug.security import check_password_hash as c; print(c(sys.argv[1], sys.argv[2]), c(sys.argv[1], sys.argv[2] + "x"))', hash, pw],
      { encoding: 'utf8' },
    );
    expect(out.trim()).toBe('True False');
  });
});

describe('temporary passwords and reset tokens', () => {
  it('temporary passwords are 16 characters with every class and no look-alikes', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const pw = generateTempPassword();
      expect(pw).toHaveLength(16);
      expect(pw).toMatch(/[A-Z]/);
      expect(pw).toMatch(/[a-z]/);
      expect(pw).toMatch(/[2-9]/);
      expect(pw).toMatch(/[!#%+\-=?@_~]/);
      expect(pw).not.toMatch(/[0O1lI]/);
      seen.add(pw);
    }
    expect(seen.size).toBe(200);
  });

  it('reset tokens are 43 URL-safe characters and unique', () => {
    const a = generateResetToken();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(generateResetToken()).not.toBe(a);
  });
});
