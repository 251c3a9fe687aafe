/**
 * A connected Temporal client for the CLI: an external cluster when TEMPORAL_ADDRESS is set,
 * otherwise the embedded stack, started in the background on first use.
 */
import { Client, Connection } from '@temporalio/client';
import { TemporalUnavailableError } from '../errors';
import { logger } from '../log';
import { ensureClusterReady } from './cluster-bootstrap';
import { codecDataConverter } from './codec';
import { externalSettings, sdkTlsOption, type ConnectionSettings } from './connection';
import { embeddedSettings, startStack, stackStatus } from './stack';

export interface ConnectedClient {
  client: Client;
  settings: ConnectionSettings;
  close(): Promise<void>;
}

/** Settings for the cluster this invocation talks to, starting the embedded stack if needed. */
export async function resolveSettings(options: { startEmbedded: boolean }): Promise<ConnectionSettings> {
  const external = externalSettings();
  if (external) return external;
  const status = options.startEmbedded ? await startStack() : stackStatus();
  // A crash loop is said on every command that uses the stack, not only in `kubedos stack status`.
  if (options.startEmbedded) for (const warning of status.warnings) logger.warn({}, warning);
  if (!status.serverRunning) {
    throw new TemporalUnavailableError(`the embedded Temporal server for ${status.home} is not running`, 'start it with `kubedos dev` or `kubedos stack start`');
  }
  const [, port] = status.address.split(':');
  return embeddedSettings({ port: Number(port), uiPort: Number(new URL(status.uiUrl).port) });
}

/**
 * Connect the CLI. On a cluster KubeDos did not start, its namespace and search attributes are
 * checked first (once, then cached: see cluster-bootstrap.ts) unless `bootstrap: false`.
 */
export async function connectClient(options: { startEmbedded?: boolean; bootstrap?: boolean } = {}): Promise<ConnectedClient> {
  // Keys first: a malformed key is a usage error before anything starts or connects.
  const dataConverter = codecDataConverter();
  const settings = await resolveSettings({ startEmbedded: options.startEmbedded ?? true });
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: settings.address,
      tls: sdkTlsOption(settings),
      apiKey: settings.apiKey,
      connectTimeout: 10_000,
    });
  } catch (err) {
    throw new TemporalUnavailableError(
      `cannot connect to Temporal at ${settings.address}`,
      settings.embedded ? 'check `kubedos stack status`' : 'check TEMPORAL_ADDRESS and the TLS/API key settings',
      { cause: err },
    );
  }
  if (options.bootstrap !== false) {
    try {
      await ensureClusterReady(connection, settings);
    } catch (err) {
      await connection.close();
      throw err;
    }
  }
  const client = new Client({ connection, namespace: settings.namespace, dataConverter });
  return { client, settings, close: () => connection.close() };
}
