import { resolve } from 'node:path';
import { defaultConfig, loadConfigFile, type GatewayConfig } from '../gateway/config.js';
import { startGateway } from '../gateway/main.js';

/** `portcullis serve`: runs until SIGINT or SIGTERM, then closes cleanly. */
export async function runServe(opts: {
  configPath?: string | undefined;
  listen?: string | undefined;
  dataDir?: string | undefined;
}): Promise<void> {
  let config: GatewayConfig = opts.configPath ? loadConfigFile(opts.configPath) : defaultConfig(resolve('data'));
  if (opts.listen !== undefined || opts.dataDir !== undefined) {
    const m = opts.listen === undefined ? undefined : /^(\[[0-9a-fA-F:.]+\]|[^:]+):(\d{1,5})$/.exec(opts.listen);
    if (opts.listen !== undefined && !m) throw new Error('--listen must be HOST:PORT');
    config = {
      ...config,
      ...(m ? { listen: { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port: Number(m[2]) } } : {}),
      ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    };
  }
  const running = await startGateway(config, { embeddedDefaults: opts.configPath === undefined });
  let closing = false;
  const stop = (signal: string): void => {
    if (closing) return;
    closing = true;
    running.logger.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        running.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // SIGHUP: load the policy file again (a broken one is reported and the running one kept).
  process.on('SIGHUP', () => void running.reloadPolicy('SIGHUP'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
