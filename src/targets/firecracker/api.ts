/**
 * A client of Firecracker's API (HTTP/1.1 + JSON on the VMM's unix socket), over whatever stream
 * reaches that socket: node:net locally, OpenSSH stream-local forwarding to a remote host (the SSH
 * layer), never a TCP port. Requests on one client are sequential and share one persistent
 * connection; a connection the server closed is reopened for the next request. An answer other
 * than 2xx is a FirecrackerApiError carrying Firecracker's `fault_message`.
 *
 * The subset used follows Firecracker's OpenAPI description (swagger 2.0,
 * src/firecracker/swagger/firecracker.yaml): GET /, PUT /machine-config, /boot-source,
 * /drives/{id}, /network-interfaces/{id}, /mmds/config, /mmds and /actions (InstanceStart,
 * SendCtrlAltDel). Every field the driver sends exists with that name and type since Firecracker
 * 1.8, the first release the bundle boots on (ACPI device discovery).
 */
import type { Duplex } from 'node:stream';
import { FirecrackerApiError, FirecrackerApiUnavailableError } from '../../errors';

export interface ApiTarget {
  target: string;
  nodeId: string;
}

/** GET / (InstanceInfo). */
export interface InstanceInfo {
  app_name: string;
  id: string;
  state: 'Not started' | 'Running' | 'Paused';
  vmm_version: string;
}

export interface ApiCallOptions {
  /** @default 15000 */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface Parsed {
  status: number;
  body: Buffer;
  close: boolean;
}

/** One complete HTTP response at the start of `buf`, or undefined while it is incomplete. */
export function parseResponse(buf: Buffer): (Parsed & { length: number }) | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!status) throw new Error(`not an HTTP response: ${JSON.stringify((head[0] ?? '').slice(0, 80))}`);
  const headers = new Map(head.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as const));
  const code = Number(status[1]);
  const length = code === 204 || code === 304 ? 0 : Number(headers.get('content-length') ?? 0);
  if (!Number.isInteger(length) || length < 0) throw new Error(`bad Content-Length ${headers.get('content-length')}`);
  if (buf.length < end + 4 + length) return undefined;
  return { status: code, body: buf.subarray(end + 4, end + 4 + length), close: /close/i.test(headers.get('connection') ?? ''), length: end + 4 + length };
}

export function requestBytes(method: string, path: string, body?: unknown): Buffer {
  const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body));
  const head = [`${method} ${path} HTTP/1.1`, 'Host: localhost', 'Accept: application/json', ...(body === undefined ? [] : ['Content-Type: application/json']), `Content-Length: ${payload.length}`, '', ''].join('\r\n');
  return Buffer.concat([Buffer.from(head, 'latin1'), payload]);
}

export class FirecrackerApi {
  private stream?: Duplex;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly open: () => Promise<Duplex>,
    private readonly where: ApiTarget,
  ) {}

  /** Send one request; resolves with the parsed JSON body (undefined for 204). */
  call<T = unknown>(method: 'GET' | 'PUT' | 'PATCH', path: string, body?: unknown, options: ApiCallOptions = {}): Promise<T> {
    const run = this.queue.then(() => this.exchange<T>(method, path, body, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async connection(): Promise<Duplex> {
    if (this.stream && !this.stream.destroyed && this.stream.writable) return this.stream;
    try {
      this.stream = await this.open();
    } catch (err) {
      throw new FirecrackerApiUnavailableError(this.where.target, this.where.nodeId, (err as Error).message, { cause: err });
    }
    this.stream.on('error', () => undefined);
    return this.stream;
  }

  private async exchange<T>(method: string, path: string, body: unknown, options: ApiCallOptions): Promise<T> {
    const stream = await this.connection();
    const timeoutMs = options.timeoutMs ?? 15_000;
    const parsed = await new Promise<Parsed>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const cleanup = (): void => {
        clearTimeout(timer);
        stream.off('data', onData);
        stream.off('close', onClose);
        stream.off('error', onError);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (detail: string): void => {
        cleanup();
        stream.destroy();
        this.stream = undefined;
        reject(new FirecrackerApiUnavailableError(this.where.target, this.where.nodeId, `${method} ${path}: ${detail}`));
      };
      const onData = (chunk: Buffer): void => {
        buf = Buffer.concat([buf, chunk]);
        let done: ReturnType<typeof parseResponse>;
        try {
          done = parseResponse(buf);
        } catch (err) {
          fail((err as Error).message);
          return;
        }
        if (!done) return;
        cleanup();
        resolve(done);
      };
      const onClose = (): void => fail('the API connection closed before the answer');
      const onError = (err: Error): void => fail(err.message);
      const onAbort = (): void => fail('cancelled');
      const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
      stream.on('data', onData);
      stream.once('close', onClose);
      stream.once('error', onError);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      stream.write(requestBytes(method, path, body));
    });
    if (parsed.close) this.close();
    const text = parsed.body.toString('utf8');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    if (parsed.status >= 300) {
      const fault = (json as { fault_message?: unknown } | undefined)?.fault_message;
      throw new FirecrackerApiError(this.where.target, this.where.nodeId, method, path, parsed.status, typeof fault === 'string' ? fault : text.slice(0, 500));
    }
    return json as T;
  }

  close(): void {
    this.stream?.destroy();
    this.stream = undefined;
  }
}
