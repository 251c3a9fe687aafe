/**
 * The boot server: a small HTTP file server of the driver's own, in the worker process, on the
 * address the BMCs (virtual media) and the machines (PXE) reach. It serves nothing of its own:
 * every path but the iPXE entry script names a live provisioning job by its random token, and
 * the drivers registered on the server say what that job may fetch (its installer ISO, its cidata
 * ISO, its pxe bundle, its NoCloud documents), by digest-named files; anything else is 404.
 *
 *   GET /ipxe                   the entry script DHCP hands to iPXE: chains to /boot/<its MAC>
 *   GET /boot/<mac, hex-hyphen> the chain to that machine's live PXE job (404 without one)
 *   GET|HEAD /j/<token>/<name>  a file of a live job (single byte ranges for BMCs that stream)
 *
 * One server per listen address and port in a process, shared by every driver (target) that names
 * it; it closes when the last one releases it.
 */
import { createReadStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { BootServerUnavailableError } from '../../errors';
import { logger } from '../../log';

export type Served = { kind: 'file'; path: string; size: number; type: string } | { kind: 'text'; body: string; type: string };

export interface BootResolver {
  /** `/j/<token>/<name>`: the file a live job may fetch, or undefined. `remote` is the client's address. */
  file(token: string, name: string, remote: string): Promise<Served | undefined>;
  /** The iPXE chain script of the live PXE job of the machine with this MAC (lowercase, `:`), or undefined. */
  chain(mac: string): Promise<string | undefined>;
}

export interface BootServerHandle {
  /** The port it listens on (the configured one, or the one the kernel chose for port 0). */
  readonly port: number;
  release(): Promise<void>;
}

/**
 * The entry script: iPXE expands `${netX/mac:hexhyp}` (the NIC it booted from) and resolves the
 * path against this script's own URL, so it is the same text for every machine and every address.
 */
export const IPXE_ENTRY = `#!ipxe
# KubeDos boot server: continue with the provisioning job of this machine, found by its MAC.
chain --autofree /boot/\${netX/mac:hexhyp} || goto none
:none
echo KubeDos: no provisioning job for \${netX/mac} here; trying the next boot device
exit 1
`;

/** A certificate and key (PEM) for serving HTTPS. */
export interface BootServerTls {
  cert: Buffer;
  key: Buffer;
}

interface Shared {
  server: http.Server | https.Server;
  resolvers: Set<BootResolver>;
  port: number;
}

const servers = new Map<string, Promise<Shared>>();

function remoteOf(req: http.IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
}

/** `bytes=a-b` (one range) against a size; undefined for no or an unsatisfiable range. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'invalid' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return 'invalid';
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'invalid' : { start, end };
}

async function resolve(shared: Shared, fn: (r: BootResolver) => Promise<Served | string | undefined>): Promise<Served | string | undefined> {
  for (const r of shared.resolvers) {
    const found = await fn(r);
    if (found !== undefined) return found;
  }
  return undefined;
}

function handler(shared: Shared) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const remote = remoteOf(req);
    const done = (status: number, served?: string) => logger.debug({ remote, method: req.method, url: req.url, status, served }, 'boot server');
    const notFound = () => {
      res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 10 }).end('not found\n');
      done(404);
    };
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-length': 0 }).end();
        return done(405);
      }
      const url = new URL(req.url ?? '/', 'http://boot.invalid');
      let served: Served | undefined;
      if (url.pathname === '/ipxe') {
        served = { kind: 'text', body: IPXE_ENTRY, type: 'text/plain' };
      } else if (/^\/boot\/[0-9a-f]{2}(-[0-9a-f]{2}){5}$/i.test(url.pathname)) {
        const mac = url.pathname.slice('/boot/'.length).toLowerCase().replace(/-/g, ':');
        const script = await resolve(shared, async (r) => r.chain(mac));
        if (typeof script === 'string') served = { kind: 'text', body: script, type: 'text/plain' };
      } else {
        const m = /^\/j\/([A-Za-z0-9_-]{20,})\/([A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)?)$/.exec(url.pathname);
        if (m && !m[2]!.split('/').some((p) => p === '.' || p === '..')) {
          const found = await resolve(shared, (r) => r.file(m[1]!, m[2]!, remote));
          if (found && typeof found !== 'string') served = found;
        }
      }
      if (!served) return notFound();
      const head = req.method === 'HEAD';
      if (served.kind === 'text') {
        const body = Buffer.from(served.body);
        res.writeHead(200, { 'content-type': served.type, 'content-length': body.length, 'cache-control': 'no-store' });
        res.end(head ? undefined : body);
        return done(200, 'text');
      }
      const range = parseRange(req.headers.range, served.size);
      if (range === 'invalid') {
        res.writeHead(416, { 'content-range': `bytes */${served.size}`, 'content-length': 0 }).end();
        return done(416);
      }
      const start = range?.start ?? 0;
      const end = range?.end ?? served.size - 1;
      res.writeHead(range ? 206 : 200, {
        'content-type': served.type,
        'content-length': served.size === 0 ? 0 : end - start + 1,
        'accept-ranges': 'bytes',
        'cache-control': 'no-store',
        ...(range ? { 'content-range': `bytes ${start}-${end}/${served.size}` } : {}),
      });
      if (head || served.size === 0) {
        res.end();
        return done(range ? 206 : 200, served.path);
      }
      const stream = createReadStream(served.path, { start, end });
      stream.on('error', (err) => {
        logger.warn({ path: served.path, err: err.message }, 'boot server: reading a served file failed');
        res.destroy(err);
      });
      stream.pipe(res);
      res.on('finish', () => done(range ? 206 : 200, served.path));
    })().catch((err: unknown) => {
      logger.warn({ url: req.url, err: (err as Error).message }, 'boot server: request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-length': 0 });
      res.end();
    });
  };
}

/**
 * Register `resolver` on the boot server at listen:port, starting it if this process has none
 * there yet. BootServerUnavailableError when the port is taken by something else.
 */
export async function serveBoot(listen: string, port: number, resolver: BootResolver, tls?: BootServerTls): Promise<BootServerHandle> {
  // Port 0 (the kernel picks one, in tests) is never shared.
  const key = port === 0 ? `${listen}:0:${Math.random()}` : `${tls ? 'https' : 'http'}://${listen}:${port}`;
  let pending = servers.get(key);
  if (!pending) {
    pending = new Promise<Shared>((resolveShared, reject) => {
      const shared: Shared = { server: tls ? https.createServer({ cert: tls.cert, key: tls.key }) : http.createServer(), resolvers: new Set(), port };
      shared.server.on('request', handler(shared));
      shared.server.keepAliveTimeout = 5_000;
      shared.server.once('error', (err: NodeJS.ErrnoException) => reject(new BootServerUnavailableError(`${listen}:${port}`, err.code ?? err.message)));
      shared.server.listen(port, listen, () => {
        shared.port = (shared.server.address() as AddressInfo).port;
        // The worker's life is its pollers', not this server's.
        shared.server.unref();
        logger.info({ listen, port: shared.port, https: tls !== undefined }, 'bare-metal boot server listening');
        resolveShared(shared);
      });
    });
    servers.set(key, pending);
    pending.catch(() => servers.delete(key));
  }
  const shared = await pending;
  shared.resolvers.add(resolver);
  let released = false;
  return {
    port: shared.port,
    release: async () => {
      if (released) return;
      released = true;
      shared.resolvers.delete(resolver);
      if (shared.resolvers.size > 0 || servers.get(key) !== pending) return;
      servers.delete(key);
      await new Promise<void>((r) => {
        shared.server.close(() => r());
        shared.server.closeAllConnections();
      });
    },
  };
}
