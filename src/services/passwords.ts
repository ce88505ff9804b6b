import crypto from 'node:crypto';
import { promisify } from 'node:util';

/**
 * Password material for accounts of the Flask application, made with node:crypto only.
 *
 * - Hashes use werkzeug's format, `pbkdf2:sha256:600000$<salt>$<hex>`, exactly what
 *   `werkzeug.security.generate_password_hash(pw, method="pbkdf2:sha256:600000")` writes
 *   and `check_password_hash` accepts: the salt is 16 characters from [A-Za-z0-9] and is
 *   used as UTF-8 text (not decoded), the key is PBKDF2-HMAC-SHA256 of the UTF-8 password,
 *   32 bytes, lower-case hex.
 * - Temporary passwords are random (crypto.randomInt), 16 characters, with at least one
 *   upper-case letter, lower-case letter, digit and symbol (the guide's recommendations).
 * - Reset tokens are 32 random bytes, base64url (like Python's secrets.token_urlsafe(32)).
 */

const pbkdf2 = promisify(crypto.pbkdf2);

export const PBKDF2_ITERATIONS = 600_000;
const SALT_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const SALT_LENGTH = 16;

function randomString(alphabet: string, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[crypto.randomInt(alphabet.length)];
  return out;
}

/** werkzeug-compatible `pbkdf2:sha256:<iterations>$salt$hex`. */
export async function hashPassword(password: string, iterations = PBKDF2_ITERATIONS): Promise<string> {
  const salt = randomString(SALT_CHARS, SALT_LENGTH);
  const key = await pbkdf2(Buffer.from(password, 'utf8'), Buffer.from(salt, 'utf8'), iterations, 32, 'sha256');
  return `pbkdf2:sha256:${iterations}$${salt}$${key.toString('hex')}`;
}

/**
 * Checks a password against a werkzeug pbkdf2 hash (sha256 or sha512, any iteration count),
 * in constant time. Other methods (scrypt, plain) are not understood and answer false.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^pbkdf2:(sha256|sha512)(?::(\d+))?\$([^$]*)\$([0-9a-f]+)$/.exec(stored);
  if (!m) return false;
  const [, digest, iter, salt, hex] = m;
  const iterations = iter ? Number(iter) : 600_000;
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 10_000_000) return false;
  const expected = Buffer.from(hex, 'hex');
  const keyLength = digest === 'sha256' ? 32 : 64;
  const key = await pbkdf2(Buffer.from(password, 'utf8'), Buffer.from(salt, 'utf8'), iterations, keyLength, digest);
  return expected.length === key.length && crypto.timingSafeEqual(expected, key);
}

// No look-alikes (0/O, 1/l/I) so a password read off a screen is typed right the first time.
const UPPER = 'ABCDEFGHJKLMNPQRSTUVWXYZ';
const LOWER = 'abcdefghijkmnopqrstuvwxyz';
const DIGITS = '23456789';
const SYMBOLS = '!#%+-=?@_~';
const ALL = UPPER + LOWER + DIGITS + SYMBOLS;

export const TEMP_PASSWORD_LENGTH = 16;

/** A strong temporary password: 16 characters (~98 bits), every character class present. */
export function generateTempPassword(length = TEMP_PASSWORD_LENGTH): string {
  if (length < 8) throw new Error('temporary passwords have at least 8 characters');
  const chars = [UPPER, LOWER, DIGITS, SYMBOLS].map((set) => set[crypto.randomInt(set.length)]);
  while (chars.length < length) chars.push(ALL[crypto.randomInt(ALL.length)]);
  // Fisher–Yates, so the guaranteed classes are not always at the front.
  for (let i = chars.length - 1; i > 0; i--) {
    const j = crypto.randomInt(i + 1);
    [chars[i], chars[j]] = [chars[j], chars[i]];
  }
  return chars.join('');
}

/** A password-reset token: 43 URL-safe characters from 32 random bytes. */
export function generateResetToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/** One hour, the guide's validity of an e-mailed reset link. */
export const RESET_TOKEN_TTL_MS = 60 * 60 * 1000;
