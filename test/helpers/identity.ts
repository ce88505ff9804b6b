import type { Db } from '../../src/db/index.js';
import { silentLogger } from '../../src/logger.js';
import type { Chat } from '../../src/services/chat.js';
import type { SlackDirectory, SlackProfile } from '../../src/services/identity.js';
import { Outbox } from '../../src/services/outbox.js';
import { StepUpService } from '../../src/services/step-up.js';
import type { Store } from '../../src/store/index.js';

/** A directory that knows nobody (users.info fails): nobody is matched by e-mail. */
export const noDirectory: SlackDirectory = { profileOf: async () => null };

/** A full, active member of the installing team with a confirmed e-mail, as users.info describes one. */
export function member(id: string, email: string | null, over: Partial<SlackProfile> = {}): SlackProfile {
  return {
    id,
    teamId: 'T_WARDEN',
    email,
    deleted: false,
    isBot: false,
    isRestricted: false,
    isUltraRestricted: false,
    isEmailConfirmed: true,
    ...over,
  };
}

/** A directory over a map the test fills. */
export function mapDirectory(profiles: Map<string, SlackProfile>): SlackDirectory {
  return { profileOf: async (id) => profiles.get(id) ?? null };
}

/** A chat that records what services send (DMs and posts), for "who was told" assertions. */
export function recordingChat(sent: { to: string; text: string }[] = []): Chat & { sent: typeof sent } {
  let ts = 1;
  return {
    sent,
    async post(channel, message) {
      sent.push({ to: channel, text: String(message.text) });
      return { channel, ts: `${ts++}.0` };
    },
    async update() {},
    async dm(user, message) {
      sent.push({ to: user, text: String(message.text) });
      return { channel: `D_${user}`, ts: `${ts++}.0` };
    },
    async ephemeral() {},
    async upload() {},
    async publishHome() {},
  };
}

/** A step-up service as the app builds it (alerts queued in the outbox, not delivered). */
export function testStepUp(db: Db, store: Store, maxFailures = 5, securityChannel?: string): StepUpService {
  const logger = silentLogger();
  return new StepUpService({ db, store, logger, outbox: new Outbox(db, recordingChat(), logger), securityChannel, maxFailures });
}

/**
 * The identity notification channel (LISTEN warden_identity) in a test's hand: `wrap(db)` gives
 * the real database, whose LISTEN on that channel never hears anything by itself; the test
 * delivers payloads (`onPayload`) or a dropped connection (`onLost`) when it chooses, or
 * refuses that LISTEN altogether (`refuse`). Other channels are listened to as usual.
 */
export class HeldChannel {
  onPayload?: (p: string) => void;
  onLost?: () => void;
  refuse = false;
  wrap(db: Db): Db {
    return new Proxy(db, {
      get: (target, prop, receiver) => {
        if (prop !== 'listen') {
          const v = Reflect.get(target, prop, receiver);
          return typeof v === 'function' ? v.bind(target) : v;
        }
        return async (channel: string, onPayload: (p: string) => void, opts?: { onLost?: () => void }) => {
          if (channel !== 'warden_identity') return target.listen(channel, onPayload, opts);
          if (this.refuse) throw new Error('LISTEN refused (test)');
          this.onPayload = onPayload;
          this.onLost = opts?.onLost;
          return async () => {};
        };
      },
    });
  }
}
