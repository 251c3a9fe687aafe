/**
 * A small Redfish client of the driver's own (Node's https; no SDK):
 *
 * - TLS: the connection is made first and checked before one byte of HTTP goes out: the BMC's
 *   certificate must have the pinned SHA-256 fingerprint, or be signed by the given CA for the
 *   BMC's address; `insecure` skips both and says so in the log on every new client.
 * - Authentication: a Redfish session (`POST …/SessionService/Sessions`, then `X-Auth-Token`) when
 *   the service root advertises one, re-opened once when it expires; HTTP basic otherwise (or when
 *   the BMC refuses sessions with 404/405/501). 401/403 is BmcAuthError (not retryable).
 * - Actions answered `202 Accepted` with a task monitor (`Location`) are followed until the task
 *   ends; a task that ends in Exception/Killed/Cancelled is a RedfishError.
 * - Errors: connection failures, timeouts and 5xx are BmcUnreachableError (retryable); other
 *   4xx are RedfishError with the BMC's own message (`error.message` and its ExtendedInfo).
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { BmcAuthError, BmcCertificateError, BmcUnreachableError, CancelledError, RedfishError } from '../../errors';
import { logger } from '../../log';

/** How a BMC's certificate is verified (exactly one). */
export interface BmcTls {
  /** `AB:CD:…`, SHA-256 of the certificate's DER bytes. */
  fingerprint?: string;
  /** PEM file of the CA. */
  ca?: string;
  insecure?: boolean;
}

export interface BmcEndpoint {
  /** Machine name, for messages. */
  machine: string;
  /** `https://host[:port]` */
  url: string;
  tls: BmcTls;
  username: string;
  password: string;
}

export interface RedfishClientOptions {
  /** Per request. @default 60000 */
  timeoutMs?: number;
  /** How long a task monitor is followed. @default 30 minutes */
  taskTimeoutMs?: number;
  /** Poll interval of task monitors when the BMC sends no Retry-After. @default 2000 */
  taskPollMs?: number;
}

export interface RedfishCallContext {
  signal?: AbortSignal;
  /** This request's timeout, for actions a BMC completes before it answers (some download media first). */
  timeoutMs?: number;
  /** Called while a task monitor is followed (activities heartbeat from it). */
  progress?: (detail: { step: string }) => void;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json?: Record<string, unknown>;
}

/** `AB:CD:…` of a certificate's DER bytes. */
export function fingerprintOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
}

/** The BMC's own words from a Redfish error body (`error.message` and its ExtendedInfo messages). */
export function redfishMessage(json: Record<string, unknown> | undefined, text: string): string {
  const error = json?.error as { message?: unknown; '@Message.ExtendedInfo'?: Array<{ Message?: unknown; MessageId?: unknown }> } | undefined;
  const parts: string[] = [];
  if (typeof error?.message === 'string') parts.push(error.message);
  for (const info of error?.['@Message.ExtendedInfo'] ?? []) {
    if (typeof info.Message === 'string' && !parts.includes(info.Message)) parts.push(info.Message);
  }
  if (parts.length) return parts.join('; ');
  const plain = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return plain ? plain.slice(0, 300) : '(no message)';
}

const SESSION_UNSUPPORTED = new Set([404, 405, 501]);

export class RedfishClient {
  private readonly base: URL;
  private auth?: { kind: 'basic' } | { kind: 'session'; token: string; location?: string };
  private authorizing?: Promise<void>;
  private caCert?: Buffer;

  constructor(
    readonly endpoint: BmcEndpoint,
    private readonly options: RedfishClientOptions = {},
  ) {
    this.base = new URL(endpoint.url);
    if (endpoint.tls.insecure) {
      logger.warn({ machine: endpoint.machine, bmc: endpoint.url }, 'TLS verification of this BMC is OFF (tls.insecure in the spec): anyone on the path can read its credentials');
    }
  }

  private get label(): string {
    return this.endpoint.url;
  }

  /** A TLS connection checked against the pin or CA before the request is written. */
  private connect(callback: (err: Error | null, socket?: Duplex) => void): void {
    const host = this.base.hostname.replace(/^\[|\]$/g, '');
    const port = Number(this.base.port || 443);
    const { tls: trust, machine } = this.endpoint;
    if (trust.ca && !this.caCert) {
      try {
        this.caCert = readFileSync(trust.ca);
      } catch (err) {
        callback(new BmcCertificateError(machine, this.label, `cannot read the CA file ${trust.ca}: ${(err as Error).message}`));
        return;
      }
    }
    const socket = tls.connect({
      host,
      port,
      servername: /^[\d.]+$/.test(host) || host.includes(':') ? undefined : host,
      ca: this.caCert,
      // Verified below, by fingerprint or against the CA, before anything is written.
      rejectUnauthorized: false,
      timeout: this.options.timeoutMs ?? 60_000,
    });
    let settled = false;
    const done = (err: Error | null) => {
      if (settled) return;
      settled = true;
      socket.setTimeout(0);
      if (err) {
        socket.destroy();
        callback(err);
      } else callback(null, socket);
    };
    socket.once('timeout', () => done(new BmcUnreachableError(machine, this.label, 'TLS connection timed out')));
    socket.once('error', (err: NodeJS.ErrnoException) => done(new BmcUnreachableError(machine, this.label, err.code ?? err.message)));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate();
      if (!cert) return done(new BmcCertificateError(machine, this.label, 'it presented no certificate'));
      const presented = fingerprintOf(cert.raw);
      if (trust.fingerprint) {
        return done(presented === trust.fingerprint ? null : new BmcCertificateError(machine, this.label, `its certificate is not the pinned one (${trust.fingerprint})`, presented));
      }
      if (trust.ca) {
        if (!socket.authorized) return done(new BmcCertificateError(machine, this.label, `its certificate is not signed by ${trust.ca}: ${String(socket.authorizationError)}`, presented));
        const mismatch = checkHost(cert, host);
        return done(mismatch ? new BmcCertificateError(machine, this.label, mismatch, presented) : null);
      }
      if (trust.insecure) return done(null);
      return done(new BmcCertificateError(machine, this.label, 'no way to verify it was configured (tls.fingerprint, tls.ca or tls.insecure)', presented));
    });
  }

  /** One HTTP exchange on a verified connection. */
  private exchange(method: string, path: string, body: unknown, headers: Record<string, string>, signal?: AbortSignal, timeoutMs = this.options.timeoutMs ?? 60_000): Promise<Reply> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<Reply>((resolve, reject) => {
      if (signal?.aborted) return reject(new CancelledError(`${method} ${path}`));
      const req = https.request(
        {
          method,
          host: this.base.hostname,
          port: this.base.port || 443,
          path,
          // No agent: our createConnection (a verified TLS socket) is used, one connection per request.
          headers: {
            accept: 'application/json',
            'odata-version': '4.0',
            ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
            ...headers,
          },
          createConnection: ((_opts: unknown, cb: (err: Error | null, socket?: Duplex) => void) => {
            this.connect(cb);
            return undefined;
          }) as never,
          signal,
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(new BmcUnreachableError(this.endpoint.machine, this.label, err.message)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: Record<string, unknown> | undefined;
            try {
              const parsed = text ? (JSON.parse(text) as unknown) : undefined;
              if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
            } catch {
              /* not JSON */
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
          });
        },
      );
      req.on('timeout', () => req.destroy(new BmcUnreachableError(this.endpoint.machine, this.label, `${method} ${path} timed out`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (signal?.aborted) return reject(new CancelledError(`${method} ${path}`));
        if (err instanceof BmcCertificateError || err instanceof BmcUnreachableError) return reject(err);
        reject(new BmcUnreachableError(this.endpoint.machine, this.label, err.code ?? err.message));
      });
      req.end(payload);
    });
  }

  /** Open a session when the service offers one, else settle on basic authentication. */
  private authorize(signal?: AbortSignal): Promise<void> {
    if (this.auth) return Promise.resolve();
    this.authorizing ??= this.login(signal).finally(() => (this.authorizing = undefined));
    return this.authorizing;
  }

  private async login(signal?: AbortSignal): Promise<void> {
    const { machine, username, password } = this.endpoint;
    const root = await this.exchange('GET', '/redfish/v1/', undefined, {}, signal);
    if (root.status >= 500) throw new BmcUnreachableError(machine, this.label, `GET /redfish/v1/ → ${root.status}`);
    const links = root.json?.Links as { Sessions?: { '@odata.id'?: string } } | undefined;
    const sessions = links?.Sessions?.['@odata.id'] ?? (root.json?.SessionService ? '/redfish/v1/SessionService/Sessions' : undefined);
    if (!sessions) {
      this.auth = { kind: 'basic' };
      return;
    }
    const reply = await this.exchange('POST', sessions, { UserName: username, Password: password }, {}, signal);
    if (reply.status === 401 || reply.status === 403) throw new BmcAuthError(machine, this.label, username, reply.status);
    if (SESSION_UNSUPPORTED.has(reply.status)) {
      logger.debug({ machine, bmc: this.label, status: reply.status }, 'the BMC refuses sessions; using basic authentication');
      this.auth = { kind: 'basic' };
      return;
    }
    const token = reply.headers['x-auth-token'];
    if (reply.status >= 300 || typeof token !== 'string') {
      if (reply.status >= 500) throw new BmcUnreachableError(machine, this.label, `POST ${sessions} → ${reply.status}: ${redfishMessage(reply.json, reply.text)}`);
      throw new RedfishError(machine, `POST ${sessions}`, reply.status, reply.status < 300 ? 'the session answer carries no X-Auth-Token' : redfishMessage(reply.json, reply.text));
    }
    const location = typeof reply.headers.location === 'string' ? new URL(reply.headers.location, this.base).pathname : undefined;
    this.auth = { kind: 'session', token, location };
  }

  private authHeaders(): Record<string, string> {
    const auth = this.auth!;
    if (auth.kind === 'session') return { 'x-auth-token': auth.token };
    const { username, password } = this.endpoint;
    return { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
  }

  /** An authenticated request; a 401 on a session re-opens it once. Errors are typed (see the file comment). */
  async request(method: string, path: string, body?: unknown, ctx: RedfishCallContext = {}): Promise<Reply> {
    const { machine, username } = this.endpoint;
    for (let attempt = 1; ; attempt++) {
      await this.authorize(ctx.signal);
      const reply = await this.exchange(method, path, body, this.authHeaders(), ctx.signal, ctx.timeoutMs);
      if (reply.status === 401 || reply.status === 403) {
        if (this.auth?.kind === 'session' && attempt === 1 && reply.status === 401) {
          this.auth = undefined; // expired: log in again, once
          continue;
        }
        throw new BmcAuthError(machine, this.label, username, reply.status);
      }
      if (reply.status >= 500) throw new BmcUnreachableError(machine, this.label, `${method} ${path} → ${reply.status}: ${redfishMessage(reply.json, reply.text)}`);
      if (reply.status >= 400) throw new RedfishError(machine, `${method} ${path}`, reply.status, redfishMessage(reply.json, reply.text));
      return reply;
    }
  }

  /** GET a resource (its JSON). */
  async get<T = Record<string, unknown>>(path: string, ctx: RedfishCallContext = {}): Promise<T> {
    const reply = await this.request('GET', path, undefined, ctx);
    if (!reply.json) throw new RedfishError(this.endpoint.machine, `GET ${path}`, reply.status, 'the answer is not a JSON object');
    return reply.json as T;
  }

  async patch(path: string, body: unknown, ctx: RedfishCallContext = {}): Promise<void> {
    const reply = await this.request('PATCH', path, body, ctx);
    if (reply.status === 202) await this.followTask(`PATCH ${path}`, reply, ctx);
  }

  /** POST an action; a 202 with a task monitor is followed until the task ends. */
  async action(path: string, body: unknown, ctx: RedfishCallContext = {}): Promise<void> {
    const reply = await this.request('POST', path, body, ctx);
    if (reply.status === 202) await this.followTask(`POST ${path}`, reply, ctx);
  }

  /** Poll a task monitor (the 202's Location, else the Task resource in its body) until it is done. */
  private async followTask(what: string, accepted: Reply, ctx: RedfishCallContext): Promise<void> {
    const machine = this.endpoint.machine;
    const location = typeof accepted.headers.location === 'string' ? accepted.headers.location : (accepted.json?.['@odata.id'] as string | undefined);
    if (!location) return; // accepted without a monitor: nothing to follow
    const monitor = new URL(location, this.base).pathname;
    const deadline = Date.now() + (this.options.taskTimeoutMs ?? 30 * 60_000);
    let reply = accepted;
    for (;;) {
      const state = reply.json?.TaskState;
      if (reply.status !== 202 && (state === undefined || TASK_DONE.has(String(state)))) break;
      if (Date.now() > deadline) throw new RedfishError(machine, what, 202, `its task ${monitor} did not finish in time (last state ${String(state ?? 'unknown')})`, { retryable: true });
      const retryAfter = Number(reply.headers['retry-after']);
      ctx.progress?.({ step: `${what}: task ${monitor} ${String(state ?? 'running')}${reply.json?.PercentComplete !== undefined ? ` ${String(reply.json.PercentComplete)}%` : ''}` });
      try {
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 30_000) : (this.options.taskPollMs ?? 2_000), undefined, { signal: ctx.signal });
      } catch {
        throw new CancelledError(what);
      }
      reply = await this.request('GET', monitor, undefined, ctx);
    }
    const state = String(reply.json?.TaskState ?? 'Completed');
    if (TASK_FAILED.has(state) || (reply.json?.TaskStatus !== undefined && reply.json.TaskStatus !== 'OK' && reply.json.TaskStatus !== 'Warning')) {
      const messages = (reply.json?.Messages as Array<{ Message?: string }> | undefined)?.map((m) => m.Message).filter(Boolean).join('; ');
      throw new RedfishError(machine, what, reply.status, `its task ${monitor} ended ${state}${reply.json?.TaskStatus ? ` (${String(reply.json.TaskStatus)})` : ''}${messages ? `: ${messages}` : ''}`);
    }
  }

  /** End the session (best effort); the next request opens a new one. */
  async close(): Promise<void> {
    const auth = this.auth;
    this.auth = undefined;
    if (auth?.kind !== 'session' || !auth.location) return;
    await this.exchange('DELETE', auth.location, undefined, { 'x-auth-token': auth.token }).catch((err: unknown) => logger.debug({ bmc: this.label, err: (err as Error).message }, 'closing the Redfish session failed'));
  }
}

const TASK_DONE = new Set(['Completed', 'Exception', 'Killed', 'Cancelled', 'Interrupted']);
const TASK_FAILED = new Set(['Exception', 'Killed', 'Cancelled', 'Interrupted']);

/** Whether a CA-verified certificate names the address we connected to (DNS name or IP SAN). */
function checkHost(cert: X509Certificate, host: string): string | undefined {
  const ok = /^[\d.]+$/.test(host) || host.includes(':') ? cert.checkIP(host) : cert.checkHost(host);
  return ok ? undefined : `its certificate does not name ${host} (subject ${cert.subject.replace(/\n/g, ', ')}${cert.subjectAltName ? `; ${cert.subjectAltName}` : ''})`;
}
