import { alertsInteractions } from './alerts.js';
import { auditCommand } from './audit.js';
import type { CommandModule, InteractionModule } from './types.js';
import { healthCommand } from './health.js';
import { promotionsCommand } from './promotions.js';
import { stormInteractions } from './storms.js';
import { twofaCommand } from './twofa.js';
import { usersCommand } from './users.js';

/** Every slash command Warden registers (keep manifest.yml in step). */
export const commands: CommandModule[] = [usersCommand, promotionsCommand, twofaCommand, healthCommand, auditCommand];

/** Interaction handlers that belong to no slash command (alert buttons, App Home). */
export const interactionModules: InteractionModule[] = [alertsInteractions, stormInteractions];
