import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for the web application's `/api/system_health` (seed 001's sample response),
 * whose answer a test switches: healthy, degraded, HTTP 500, not JSON, or hanging forever.
 */
export type AppHealthMode = 'healthy' | 'degraded' | 'unhealthy' | '500' | 'not-json' | 'hang';

export class AppHealthServer {
  mode: AppHealthMode = 'healthy';
  requests = 0;
  private server?: http.Server;
  url = '';

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      this.requests++;
      if (this.mode === 'hang') return; // never answers; the client's timeout must fire
      if (this.mode === 'not-json') {
        res.writeHead(200, { 'content-type': 'text/html' });
        return res.end('<html>ok</html>');
      }
      const status = this.mode === '500' ? 'unhealthy' : this.mode;
      res.writeHead(this.mode === '500' ? 500 : 200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          status,
          message: status === 'healthy' ? 'All systems operational' : 'Functional but suboptimal',
          service: 'TraitorTrack',
          components: {
            database: { status: 'healthy', connected: true, query_time_ms: 5.2, pool: { size: 40, checked_out: 15, usage_percent: 37.5 } },
            cache: { status: status === 'healthy' ? 'healthy' : 'degraded', hit_rate: status === 'healthy' ? 72.5 : 41.2 },
          },
        }),
      );
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/system_health`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
