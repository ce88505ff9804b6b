import type { Services } from '../services/index.js';
import type { JobStarter } from './index.js';

/**
 * Alert delivery and detection (issue 7, part A).
 * - outbox: the delivery loop (timer + LISTEN warden_outbox), on every replica; rows are
 *   claimed with a lease so replicas never post the same one.
 */
export const startOutboxDelivery: JobStarter = async (services: Services) => services.outbox.start();

export const alertJobStarters: JobStarter[] = [startOutboxDelivery];
