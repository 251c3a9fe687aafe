/**
 * govc, VMware's own CLI, as the vsphere driver runs it: always through the one tool runner
 * (src/exec/run.ts: argv, no shell, a clean environment), with the connection in the child's
 * environment only —
 *
 *   GOVC_URL, GOVC_USERNAME, GOVC_PASSWORD  read on this worker from where the spec says
 *                                           (`{env: NAME}` / `{file: PATH}`), at every call
 *   GOVC_TLS_KNOWN_HOSTS + GOVC_TLS_CA_CERTS a pinned thumbprint: a known-hosts file of
 *                                           `host:port THUMBPRINT`, and a CA bundle holding only a
 *                                           certificate whose key was thrown away, so no system CA
 *                                           can vouch for another certificate (govmomi falls back
 *                                           to the thumbprint only when the chain is untrusted)
 *   GOVC_TLS_CA_CERTS                       a CA file (tls.caFile)
 *   GOVC_INSECURE=1                         tls.insecure, with a warning every time a driver is made
 *   GOVC_PERSIST_SESSION=false              no session cookies on disk (concurrent govc processes
 *                                           would share one file, which govmomi does not lock)
 *
 * so no secret is ever on a command line, in a log line or in an error (ToolFailedError carries
 * argv and stderr only). Failures are sorted into the vsphere error classes by what govc says.
 */
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CancelledError, KubedosError, ToolFailedError, ToolMissingError, VsphereCertificateError, VsphereCredentialsError, VsphereUnavailableError } from '../../errors';
import { runTool } from '../../exec/run';
import { logger } from '../../log';
import type { DriverContext } from '../driver';
import type { VsphereTargetSpec } from './index';

/**
 * A certificate nobody holds the key of (generated once, key discarded): the only CA govc is
 * given when a thumbprint is pinned, so trust can come from the pin alone.
 */
export const NO_TRUST_ANCHOR_PEM = `-----BEGIN CERTIFICATE-----
MIIB+zCCAaGgAwIBAgIUXA7//yMsmTTddx2/7jAozJ/1MEkwCgYIKoZIzj0EAwIw
UjE+MDwGA1UEAww1S3ViZURvczogbm8gdHJ1c3QgYW5jaG9yICh2U3BoZXJlIHRo
dW1icHJpbnQgcGlubmluZykxEDAOBgNVBAoMB0t1YmVEb3MwIBcNMjYxMjAxMjI1
NjU1WhgPMjEyNjExMDcyMjU2NTVaMFIxPjA8BgNVBAMMNUt1YmVEb3M6IG5vIHRy
dXN0IGFuY2hvciAodlNwaGVyZSB0aHVtYnByaW50IHBpbm5pbmcpMRAwDgYDVQQK
DAdLdWJlRG9zMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqUPJUM234cfH6+3u
LtWhP52JHS3rjzNEBJw+quuEnNA8yIGqbFpPWwo6TWiCC7Ytkq89TWAD01f0VAjV
RrpTFqNTMFEwHQYDVR0OBBYEFFTxu8yVz6H/pa0Clg9870EmhaHnMB8GA1UdIwQY
MBaAFFTxu8yVz6H/pa0Clg9870EmhaHnMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIhAICEvQyxkdM0OjIJEtEah3WfgFgoV7GwcgCZvXJHZZSgAiBy
51+ocDYlSNjV5EvQOB6lRMtT4aqRgcZxekYYGtuoHA==
-----END CERTIFICATE-----
`;

/** A reference the spec gives instead of a value: read on this worker. */
type Ref = string | { readonly env: string } | { readonly file: string };

/** How long one govc call may take, by kind. */
export const GOVC_TIMEOUT = { quick: 2 * 60_000, task: 30 * 60_000, import: 2 * 60 * 60_000 } as const;
/** Heartbeat period while a call (or the wait for a slot) runs; the create activity's heartbeat timeout is 20 s. */
const HEARTBEAT_MS = 5_000;

/** The value behind a reference; `secret` refuses literals (a password). */
export async function resolveRef(ref: Ref, target: string, what: string): Promise<string> {
  if (typeof ref === 'string') return ref;
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (!value) throw new VsphereCredentialsError(target, `${what}: environment variable ${ref.env} is not set on this worker`);
    return value;
  }
  let text: string;
  try {
    text = await readFile(ref.file, 'utf8');
  } catch (err) {
    throw new VsphereCredentialsError(target, `${what}: cannot read ${ref.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (!value) throw new VsphereCredentialsError(target, `${what}: ${ref.file} is empty`);
  return value;
}

/** `host:port` as govmomi keys thumbprints (443 when the URL has no port). */
export function thumbprintHost(url: URL): string {
  return `${url.hostname}:${url.port || '443'}`; // an IPv6 hostname keeps its brackets
}

/** A counting semaphore: at most `limit` holders at once. */
export class Slots {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(readonly limit: number) {}

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}

/** Call `ctx.progress` every few seconds until `work` settles (activities heartbeat from it). */
export async function withHeartbeat<T>(ctx: DriverContext, step: string, work: Promise<T>): Promise<T> {
  if (!ctx.progress) return work;
  ctx.progress({ step });
  const timer = setInterval(() => ctx.progress?.({ step }), HEARTBEAT_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** What one govc call needs besides its arguments. */
export interface GovcCall {
  timeoutMs?: number;
  /** Shown in heartbeats. */
  step?: string;
  /** Extra environment (GOVC_DATACENTER …). */
  env?: Record<string, string>;
}

/** govc against one vsphere target. */
export class Govc {
  private readonly slots: Slots;
  private warned = false;

  constructor(
    private readonly target: string,
    private readonly spec: VsphereTargetSpec,
    /** Private per-target directory (known-hosts file, govmomi home). */
    private readonly stateDir: string,
    /** The govc executable. @default 'govc' (on PATH) */
    private readonly binary = 'govc',
  ) {
    this.slots = new Slots(spec.concurrency);
  }

  /** The SDK URL, resolved (it may come from the environment). */
  async url(): Promise<URL> {
    const text = await resolveRef(this.spec.url as Ref, this.target, 'url');
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new VsphereCredentialsError(this.target, `url: ${JSON.stringify(text.slice(0, 80))} is not a URL`, 'set it to https://<vcenter>/sdk');
    }
    if (url.protocol !== 'https:' || url.username || url.password) {
      throw new VsphereCredentialsError(this.target, `url: ${url.origin} must be https and carry no credentials`, 'set it to https://<vcenter>/sdk; credentials go in credentials.username/password');
    }
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/sdk';
    return url;
  }

  /** The child's environment for one call: connection, credentials and TLS, nothing inherited. */
  private async environment(): Promise<Record<string, string>> {
    const url = await this.url();
    const username = await resolveRef(this.spec.credentials.username as Ref, this.target, 'credentials.username');
    const password = await resolveRef(this.spec.credentials.password as Ref, this.target, 'credentials.password');
    const home = path.join(this.stateDir, 'govmomi');
    await mkdir(home, { recursive: true, mode: 0o700 });
    const env: Record<string, string> = {
      GOVC_URL: url.href,
      GOVC_USERNAME: username,
      GOVC_PASSWORD: password,
      GOVC_PERSIST_SESSION: 'false',
      GOVMOMI_HOME: home,
    };
    const tls = this.spec.tls;
    if (tls.thumbprint !== undefined) {
      const pin = (await resolveRef(tls.thumbprint as Ref, this.target, 'tls.thumbprint')).toUpperCase();
      if (!/^(?:[0-9A-F]{2}:){19}(?:(?:[0-9A-F]{2}:){12})?[0-9A-F]{2}$/.test(pin)) {
        throw new VsphereCredentialsError(this.target, 'tls.thumbprint: not a SHA-256 or SHA-1 thumbprint in colon-separated hex', "read it from vCenter's certificate (SHA-256, e.g. 4C:3D:…:D8)");
      }
      env.GOVC_TLS_KNOWN_HOSTS = await this.writePrivate('known_hosts', `${thumbprintHost(url)} ${pin}\n`);
      env.GOVC_TLS_CA_CERTS = await this.writePrivate('no-trust-anchor.pem', NO_TRUST_ANCHOR_PEM);
    } else if (tls.caFile !== undefined) {
      env.GOVC_TLS_CA_CERTS = tls.caFile;
    } else {
      env.GOVC_INSECURE = '1';
    }
    return env;
  }

  /** Said loudly, once per driver: an insecure target's certificate is not checked. */
  warnIfInsecure(): void {
    if (this.spec.tls.insecure && !this.warned) {
      this.warned = true;
      logger.warn({ target: this.target }, `target ${this.target}: tls.insecure is set: the vCenter/ESXi certificate is NOT verified, so anyone on the path can read the credentials and node identities sent to it`);
    }
  }

  /** A file in the private state directory, written atomically (concurrent calls write the same bytes). */
  private async writePrivate(name: string, content: string): Promise<string> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const file = path.join(this.stateDir, name);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    await writeFile(tmp, content, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
    return file;
  }

  /** Run `govc <args>` in a slot of the target's concurrency; its stdout, or a typed error. */
  async run(args: readonly string[], ctx: DriverContext, call: GovcCall = {}): Promise<string> {
    this.warnIfInsecure();
    const step = call.step ?? `govc ${args[0]}`;
    const release = await withHeartbeat(ctx, `${step} (waiting for one of ${this.slots.limit} slots)`, this.slots.acquire());
    try {
      if (ctx.signal?.aborted) throw new CancelledError(step);
      const env = { ...(await this.environment()), ...call.env };
      const run = runTool([this.binary, ...args], { env, signal: ctx.signal, timeoutMs: call.timeoutMs ?? GOVC_TIMEOUT.quick });
      return (await withHeartbeat(ctx, step, run)).stdout;
    } catch (err) {
      throw await this.classify(err);
    } finally {
      release();
    }
  }

  /** `govc <args> -json`, parsed (several concatenated JSON values come back as an array). */
  async json<T = unknown>(args: readonly string[], ctx: DriverContext, call: GovcCall = {}): Promise<T[]> {
    return parseJsonStream(await this.run(args, ctx, call)) as T[];
  }

  /** A govc failure as the error class that says what it means (and whether to retry). */
  private async classify(err: unknown): Promise<unknown> {
    if (err instanceof ToolMissingError) return new ToolMissingError(this.binary, 'install govc (scripts/setup builds it into .tools/bin) on the vsphere worker');
    if (!(err instanceof ToolFailedError)) return err;
    const stderr = err.stderrTail;
    const endpoint = await this.url().then((u) => u.host, () => 'vSphere');
    if (/thumbprint does not match/.test(stderr)) return new VsphereCertificateError(this.target, endpoint, 'its thumbprint is not the pinned tls.thumbprint');
    if (/x509:|tls: failed to verify|certificate is not valid|certificate signed by unknown authority/.test(stderr)) {
      return new VsphereCertificateError(this.target, endpoint, `it does not verify against ${this.spec.tls.caFile ? `tls.caFile ${this.spec.tls.caFile}` : 'the pinned thumbprint'} (${lastLine(stderr)})`);
    }
    if (/InvalidLogin|Login failure|incorrect user name or password|Cannot complete login/i.test(stderr)) {
      return new VsphereCredentialsError(this.target, `${endpoint} refused the login of the configured user`, 'check the user name and password the target names (and that the account is not locked)');
    }
    if (/connection refused|no such host|i\/o timeout|connection reset|TLS handshake timeout|context deadline exceeded|\bEOF\b|ServiceUnavailable|503 Service Unavailable|HostCommunication|network is unreachable/i.test(stderr) || err.signal === 'timeout') {
      return new VsphereUnavailableError(this.target, lastLine(stderr) || `govc ${err.signal ?? 'failed'}`);
    }
    return err;
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1)?.replace(/^govc: /, '').slice(0, 300) ?? '';
}

/** What govc printed on stderr for a failed call ('' for other errors). */
export function govcStderr(err: unknown): string {
  return err instanceof ToolFailedError ? err.stderrTail : '';
}

/** govc's "not found" answers (`vm '…' not found`, `… not found`). */
export function isNotFound(err: unknown): boolean {
  return /\bnot found\b|ManagedObjectNotFound|has already been deleted/.test(govcStderr(err));
}

/** A name that is taken: vCenter's DuplicateName, or (vcsim, ESXi) a VM directory that exists. */
export function isAlreadyExists(err: unknown): boolean {
  return /DuplicateName|already exists|FileAlreadyExists/i.test(govcStderr(err));
}

/**
 * JSON values written one after another (`govc object.collect -json -type m` streams one object
 * per managed object), as an array; a single array document is returned as its elements.
 */
export function parseJsonStream(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') {
        inString = false;
        if (depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
      }
      continue;
    }
    if (c === '"') {
      inString = true;
      if (depth === 0) start = i;
    } else if (c === '{' || c === '[') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    } else if (depth === 0 && !/\s/.test(c)) {
      // A bare scalar (null, a number): up to the next whitespace.
      const end = text.slice(i).search(/\s/);
      const token = end < 0 ? text.slice(i) : text.slice(i, i + end);
      values.push(JSON.parse(token));
      i += token.length - 1;
    }
  }
  if (depth !== 0 || inString) throw new KubedosError(`govc printed incomplete JSON (${text.length} bytes)`);
  return values.length === 1 && Array.isArray(values[0]) ? (values[0] as unknown[]) : values;
}
