import type { App } from '@slack/bolt';
import type { Logger } from '../logger.js';
import { homeData } from '../services/home.js';
import { homeView } from './cards/home.js';
import type { Services } from '../services/index.js';

/**
 * The App Home tab: rebuilt and published every time a user opens it. The content comes
 * from a Slack-free service function (src/services/home.ts), rendered by ./cards/home.ts.
 */
export function registerHome(app: App, services: Services, logger: Logger): void {
  app.event('app_home_opened', async ({ event, body }) => {
    if ((event as { tab?: string }).tab && (event as { tab?: string }).tab !== 'home') return;
    const userId = (event as { user: string }).user;
    const teamId = (body as { team_id?: string }).team_id ?? '';
    try {
      const home = homeView(await homeData(services, { userId, teamId }));
      await services.chat.publishHome(userId, home);
    } catch (err) {
      logger.error({ err }, 'could not publish the App Home');
    }
  });
}
