import pino, { type Logger as PinoLogger } from 'pino';

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
  'code',
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

export function createLogger(opts: { level?: string; format?: 'json' | 'pretty'; name?: string } = {}): Logger {
  const pretty = opts.format ? opts.format === 'pretty' : process.stdout.isTTY && process.env.NODE_ENV !== 'production';
  return pino({
    name: opts.name ?? 'warden',
    level: opts.level ?? 'info',
    redact: { paths: redactPaths, censor: '[redacted]' },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' } } }
      : {}),
  });
}

/** A logger that drops everything: for tests and the console's quiet mode. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
