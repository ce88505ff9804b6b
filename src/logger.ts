import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/** Keys whose values must never reach a log line, at any of the first three levels of nesting. */
const SECRET_KEYS = [
  'token',
  'bot_token',
  'botToken',
  'appToken',
  'signingSecret',
  'signing_secret',
  'authorization',
  'Authorization',
  'password',
  'password_hash',
  'temp_password',
  'temporaryPassword',
  'totp_secret',
  'totpSecret',
  'totp',
  'secret',
  'password_reset_token',
  'reset_token',
  'resetLink',
  'reset_link',
  'api_key',
  'apiKey',
  'EMAIL_API_KEY',
  'SLACK_BOT_TOKEN',
  'SLACK_SIGNING_SECRET',
  'SLACK_APP_TOKEN',
  'email',
];

export const redactPaths = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);
const CENSOR = '[redacted]';

/**
 * A child logger for lines whose fields are all flat primitives Warden chose (ids, enums,
 * numbers), like the per-request line. pino runs the wildcard paths (`*.k`, `*.*.k`) as a
 * redactor over every field of every line, strings included: on the per-request line that was
 * the largest single cost of logging (#15, measured with a CPU profile). A flat line has no
 * nested keys for those paths to match, so this child keeps the top-level keys only; the
 * shape hook (redactShapes) still scans the whole line.
 */
export function flatLineLogger(logger: Logger, bindings: Record<string, string>): Logger {
  return logger.child(bindings, { redact: { paths: SECRET_KEYS, censor: CENSOR } });
}

/**
 * Secrets recognised by their shape, wherever they appear in a line (an error message, a URL,
 * a nested object): key names cannot tell them apart from harmless values. `code` is one such
 * key: `err.code` (ECONNREFUSED, SQLSTATE 23505, Slack's error codes) must stay readable, a
 * TOTP or e-mail code (6 or 8 digits) must not.
 */
export const SECRET_SHAPES: readonly [RegExp, string][] = [
  [/\bxox[abposre]-[A-Za-z0-9-]{6,}/g, 'xox-[redacted]'],
  [/\bxapp-[A-Za-z0-9-]{6,}/g, 'xapp-[redacted]'],
  [/\bSG\.[\w-]{8,}\.[\w-]{8,}/g, 'SG.[redacted]'],
  [/(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, '$1[redacted]'],
  // user:password@ in any URL (postgres://, redis://, https://)
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@"]*:)[^\s@"/]+@/gi, '$1[redacted]@'],
  [/("(?:code|otp|totpCode|totp_code)"\s*:\s*")\s*(?:\d\s?){5,7}\d\s*"/gi, '$1[redacted]"'],
  // Issue 11: no full e-mail address and no response URL (a bearer capability) at any level.
  [/https:\/\/hooks\.slack\.com\/[^\s"'\\]+/g, 'https://hooks.slack.com/[redacted]'],
  [/([A-Za-z0-9._%+-]{1,3})[A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g, '$1***@***'],
];

/**
 * Every shape above needs one of these substrings (case-insensitive: a superset of each
 * pattern's fixed part), so a line without any — most lines, the per-request line always — is
 * passed on after one scan instead of eight (#15).
 */
const MAY_HOLD_SHAPE = /xox|xapp-|sg\.|bearer|:\/\/|code"|otp"|hooks\.slack\.com|@/i;

export function redactShapes(line: string): string {
  if (!MAY_HOLD_SHAPE.test(line)) return line;
  let out = line;
  for (const [re, repl] of SECRET_SHAPES) out = out.replace(re, repl);
  return out;
}

/** pino-pretty is a development dependency: the production image does not ship it. */
function prettyAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

export function createLogger(
  opts: {
    level?: string;
    format?: 'json' | 'pretty';
    name?: string;
    /** JSON lines to this stream instead of stdout (tests read the lines). */
    destination?: DestinationStream;
  } = {},
): Logger {
  const base = {
    name: opts.name ?? 'warden',
    level: opts.level ?? 'info',
    redact: { paths: redactPaths, censor: CENSOR },
    hooks: { streamWrite: redactShapes },
  };
  if (opts.destination) return pino(base, opts.destination);
  const pretty = (opts.format ? opts.format === 'pretty' : process.stdout.isTTY && process.env.NODE_ENV !== 'production') && prettyAvailable();
  return pino({
    ...base,
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' } } }
      : {}),
  });
}

/** A logger that drops everything: for tests and the console's quiet mode. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
