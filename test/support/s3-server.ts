/**
 * A real S3-compatible server for the store tests: versitygw (installed by scripts/setup-versitygw
 * into .tools/bin) with its POSIX backend on a temp dir, on a free loopback port, started through
 * spawnDaemon and stopped with stopProcess. The bucket is created before it is handed out.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnDaemon, stopProcess } from '../../src/exec/daemon';
import { S3Store, type S3Config } from '../../src/store/s3';
import { freePort } from '../../src/exec/ports';
import { waitForPort } from './wait-for-port';

const ROOT = path.resolve(__dirname, '..', '..');
export const VERSITYGW = path.join(ROOT, '.tools', 'bin', 'versitygw');

export interface S3TestServer {
  endpoint: string;
  /** The POSIX backend root: `<dir>/<bucket>/<key>` is the object's file. */
  dataDir: string;
  bucket: string;
  config: S3Config;
  /** A new store on this server (its own SDK client). */
  store(overrides?: Partial<S3Config>): S3Store;
  /** The backend file holding an object (to corrupt it behind the server's back). */
  objectFile(key: string): string;
  stop(): Promise<void>;
}

/** `host`: the address to listen on (default loopback; the cluster tests give a bridge's, so network namespaces reach it). */
export async function startS3Server(bucket = 'kubedos-test', options: { host?: string } = {}): Promise<S3TestServer> {
  const host = options.host ?? '127.0.0.1';
  if (!existsSync(VERSITYGW)) {
    throw new Error(`${VERSITYGW} is missing: run scripts/setup-versitygw (it builds versitygw from the Go module proxy)`);
  }
  const base = mkdtempSync(path.join(os.tmpdir(), 'kubedos-s3-'));
  const dataDir = path.join(base, 'data');
  mkdirSync(dataDir);
  const logFile = path.join(base, 'versitygw.log');
  const port = await freePort(host);
  const accessKeyId = 'kubedos-test';
  const secretAccessKey = 'kubedos-test-secret';
  const argv = [VERSITYGW, '--port', `${host}:${port}`, '--access', accessKeyId, '--secret', secretAccessKey, '--quiet', 'posix', dataDir];
  const pid = spawnDaemon(argv, { logFile, detached: false, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: base } });
  const marker = dataDir; // unique to this server: never mistaken for another process
  try {
    await waitForPort('versitygw', host, port, pid, logFile, 30_000);
  } catch (err) {
    await stopProcess(pid, marker, 2000);
    throw err;
  }
  const endpoint = `http://${host}:${port}`;
  const config: S3Config = { bucket, endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } };
  const admin = new S3Store(config);
  await admin.ensureBucket();
  admin.destroy();
  return {
    endpoint,
    dataDir,
    bucket,
    config,
    store: (overrides = {}) => new S3Store({ ...config, ...overrides }),
    objectFile: (key) => path.join(dataDir, bucket, key),
    stop: async () => {
      await stopProcess(pid, marker, 5000);
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** Count the requests a store sends, by command name (for resume and dedup assertions). */
export function countRequests(store: S3Store): Map<string, number> {
  const counts = new Map<string, number>();
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = (context as { commandName?: string }).commandName ?? '?';
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return next(args);
    },
    { step: 'initialize', name: 'kubedosTestCounter' },
  );
  return counts;
}
