/**
 * The real storage emulators the cloud target tests start on loopback (installed by
 * scripts/setup-cloud-emulators): Azurite's blob service (Microsoft's Azure Storage emulator,
 * telemetry off) and fake-gcs-server (a GCS emulator), each on a free port with its data in a
 * temp directory, stopped (and the directory removed) by `stop`. Plus a counting HTTP proxy to put
 * between a driver and an emulator, to see exactly which bytes went over the wire.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/config/paths';
import { freePort } from '../../src/exec/ports';

/** Azurite's well-known development account (documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface RunningEmulator {
  /** Base URL (Azurite: the account's blob endpoint; fake-gcs: the API root). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

async function waitHttp(url: string, deadlineMs: number, child: ChildProcess, log: () => string): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`emulator exited (${child.exitCode}) before answering: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.setTimeout(1000, () => req.destroy());
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`emulator at ${url} did not answer: ${log()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function started(argv: string[], dir: string): { child: ChildProcess; log: () => string } {
  let out = '';
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } });
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  return { child, log: () => out };
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

/** `azurite-blob --disableTelemetry` on a free loopback port, data on disk in a temp directory. */
export async function startAzurite(): Promise<RunningEmulator & { connectionString(endpoint?: string): string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-azurite-'));
  const port = await freePort();
  const bin = path.join(projectRoot(), '.tools', 'bin', 'azurite-blob');
  // --skipApiVersionCheck: @azure/storage-blob may speak a newer service version than this Azurite knows.
  const { child, log } = started([process.execPath, bin, '--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', dir, '--disableTelemetry', '--skipApiVersionCheck', '--silent'], dir);
  const url = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  await waitHttp(`http://127.0.0.1:${port}/`, 30_000, child, log);
  return {
    url,
    port,
    stop: stopper(child, dir),
    connectionString: (endpoint = url) => `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${endpoint};`,
  };
}

/**
 * fake-gcs-server (http, filesystem backend in a temp directory) on a loopback port (free unless
 * given); `externalUrl` is what it puts in resumable uploads' Location (a proxy in front of it).
 */
export async function startFakeGcs(buckets: readonly string[], o: { port?: number; externalUrl?: string } = {}): Promise<RunningEmulator> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-fake-gcs-'));
  const port = o.port ?? (await freePort());
  const bin = path.join(projectRoot(), '.tools', 'bin', 'fake-gcs-server');
  const url = `http://127.0.0.1:${port}`;
  const { child, log } = started([bin, '-scheme', 'http', '-host', '127.0.0.1', '-port', String(port), '-backend', 'filesystem', '-filesystem-root', path.join(dir, 'data'), '-external-url', o.externalUrl ?? url, '-public-host', `127.0.0.1:${port}`, '-log-level', 'warn'], dir);
  await waitHttp(`${url}/storage/v1/b`, 30_000, child, log);
  for (const b of buckets) {
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${url}/storage/v1/b?project=test`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`create bucket ${b}: HTTP ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ name: b }));
    });
  }
  return { url, port, stop: stopper(child, dir) };
}

export interface ProxiedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** Bytes of the request body. */
  bytes: number;
  status?: number;
}

/** A loopback HTTP proxy to `target` that records every request (method, URL, headers, body size). */
export async function countingProxy(target: string): Promise<{ url: string; requests: ProxiedRequest[]; close(): Promise<void> }> {
  const to = new URL(target);
  const requests: ProxiedRequest[] = [];
  const server = http.createServer((req, res) => {
    const record: ProxiedRequest = { method: req.method!, url: req.url!, headers: req.headers, bytes: 0 };
    requests.push(record);
    // The Host header is kept: servers that build URLs from it (fake-gcs-server's upload sessions) hand out the proxy's.
    const upstream = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      record.status = up.statusCode;
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502).end(String(err));
      else res.destroy();
    });
    req.on('data', (c: Buffer) => (record.bytes += c.length));
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
    },
  };
}
