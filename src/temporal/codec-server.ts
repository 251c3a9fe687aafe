/**
 * The codec endpoint: Temporal's remote codec protocol over HTTP, so the Web UI and the `temporal`
 * CLI (`--codec-endpoint`) show encrypted payloads in clear. POST /encode and POST /decode take
 * and return `{"payloads": [<Payload in proto JSON>]}` (an omitted `payloads` is the empty list, as
 * proto JSON writes it); the namespace comes in `X-Namespace` (one keyring serves every namespace).
 *
 * It decrypts for anyone who can reach it, so it listens on loopback only, answers browsers only
 * from the UI's origin (CORS with credentials, preflight included), and refuses any Host header
 * that is not a loopback name (a web page that rebinds its DNS name to 127.0.0.1 gets nothing).
 *
 * The embedded stack runs it as a daemon: `node dist/src/temporal/codec-server.js --port N
 * --allow-origin http://127.0.0.1:8233`, keys from the same place as every other process.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import type { PayloadCodec } from '@temporalio/common';
import { JSONToPayload, payloadToJSON, type JSONPayload } from '@temporalio/common/lib/proto-utils';
import { ConfigError } from '../errors';
import { logger } from '../log';
import { AesGcmPayloadCodec, loadCodecKeyring } from './codec';

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** Browser origins allowed to call (the Web UI's), e.g. `http://127.0.0.1:8233`. */
  allowedOrigins: readonly string[];
  /** @default 0 (any free port) */
  port?: number;
  /** Loopback address to listen on. @default '127.0.0.1' */
  host?: string;
  /** Largest request body accepted. @default 16 MiB */
  maxBodyBytes?: number;
}

export interface CodecServer {
  /** Base URL to give the UI (`--ui-codec-endpoint`) or the CLI (`--codec-endpoint`). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const ALLOWED_HEADERS = 'Content-Type, X-Namespace, Authorization';

/** The origins a UI at `uiUrl` is served from: its own, and the same port under the other loopback name. */
export function uiOrigins(uiUrl: string): string[] {
  const url = new URL(uiUrl);
  const origins = new Set([url.origin]);
  if (LOOPBACK_HOSTS.has(url.hostname)) {
    for (const host of ['127.0.0.1', 'localhost']) origins.add(`${url.protocol}//${host}${url.port ? `:${url.port}` : ''}`);
  }
  return [...origins];
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new HttpError(413, `request body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parsePayloads(body: Buffer): JSONPayload[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new HttpError(400, 'expected {"payloads": [...]}');
  const unknown = Object.keys(parsed).filter((k) => k !== 'payloads');
  if (unknown.length) throw new HttpError(400, `unknown field ${unknown.map((k) => JSON.stringify(k)).join(', ')}: expected {"payloads": [...]}`);
  // Proto JSON omits an empty list: the temporal CLI sends {} for a signal or query with no argument.
  const payloads = (parsed as { payloads?: unknown }).payloads ?? [];
  if (!Array.isArray(payloads)) throw new HttpError(400, 'expected {"payloads": [...]}');
  return payloads as JSONPayload[];
}

/** Start the codec endpoint; resolves once it listens. */
export function startCodecServer(options: CodecServerOptions): Promise<CodecServer> {
  const host = options.host ?? '127.0.0.1';
  const allowed = new Set(options.allowedOrigins);
  const limit = options.maxBodyBytes ?? 16 * 1024 * 1024;
  const log = logger.child({ component: 'codec-server' });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const hostname = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!LOOPBACK_HOSTS.has(hostname) && hostname !== host) throw new HttpError(403, `host ${hostname || '(none)'} is not served`);

    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!allowed.has(origin)) throw new HttpError(403, `origin ${origin} is not allowed`);
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
      res.setHeader('Access-Control-Max-Age', '600');
      if (req.headers['access-control-request-private-network'] === 'true') res.setHeader('Access-Control-Allow-Private-Network', 'true');
      res.writeHead(204).end();
      return;
    }

    const pathname = new URL(req.url ?? '/', 'http://codec').pathname;
    const op = pathname.endsWith('/encode') ? 'encode' : pathname.endsWith('/decode') ? 'decode' : undefined;
    if (!op) throw new HttpError(404, `no such endpoint ${pathname}: POST /encode or /decode`);
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} ${pathname}: use POST`);

    const payloads = parsePayloads(await readBody(req, limit)).map((p) => {
      try {
        return JSONToPayload(p);
      } catch (err) {
        throw new HttpError(400, `a payload is malformed: ${(err as Error).message}`);
      }
    });
    const out = await options.codec[op](payloads);
    log.debug({ op, namespace: req.headers['x-namespace'], count: payloads.length }, 'codec request');
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ payloads: out.map(payloadToJSON) }));
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // A payload this keyring cannot decrypt is the caller's problem to see, not a server crash.
      const status = err instanceof HttpError ? err.status : 400;
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof HttpError)) log.warn({ error: message }, 'codec request failed');
      if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: message }));
    });
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
        port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** Daemon entry point: `codec-server.js --port N [--allow-origin ORIGIN]...`. */
async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, 'allow-origin': { type: 'string', multiple: true } },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`--port: "${values.port}" is not a port number`);
  const server = await startCodecServer({ codec: new AesGcmPayloadCodec(loadCodecKeyring()), port, allowedOrigins: values['allow-origin'] ?? [] });
  logger.info({ url: server.url, origins: values['allow-origin'] ?? [] }, 'codec endpoint listening');
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    logger.error({ error: String((err as Error)?.stack ?? err) }, 'codec endpoint failed');
    process.exit(1);
  });
}
