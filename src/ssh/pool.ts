/**
 * Connection reuse: one SSH connection per user@host:port, pin and identity, shared by every
 * caller that leases it, closed after it has been idle for a while or when the pool closes. A
 * connection that dies is dropped, so the next lease reconnects.
 */
import { CancelledError } from '../errors';
import { SshClient, targetLabel, type ConnectOptions, type SshTarget } from './client';

export interface SshPoolOptions {
  /** Close a connection this long after its last lease is released. @default 30000 */
  idleMs?: number;
  /** How connections are made (timeouts, keepalive, agent). Its `signal` is ignored: each lease has its own. */
  connect?: Omit<ConnectOptions, 'signal'>;
}

/** A borrowed connection; release it exactly once (further calls are ignored). */
export interface SshLease {
  readonly client: SshClient;
  release(): void;
}

interface Entry {
  readonly key: string;
  readonly connecting: Promise<SshClient>;
  client?: SshClient;
  refs: number;
  idle?: NodeJS.Timeout;
}

/** The pool key: everything that makes two connections interchangeable. */
export function poolKey(target: SshTarget): string {
  return JSON.stringify([targetLabel(target), target.hostKey?.trim() ?? null, target.knownHosts ?? null, target.identityFile ?? null]);
}

export class SshPool {
  private readonly entries = new Map<string, Entry>();
  private readonly idleMs: number;
  private closed = false;

  constructor(private readonly options: SshPoolOptions = {}) {
    this.idleMs = options.idleMs ?? 30_000;
  }

  /** Number of connections open or opening. */
  get size(): number {
    return this.entries.size;
  }

  /** Lease a connection to `target`, connecting (once, for all concurrent callers) if needed. */
  async acquire(target: SshTarget, options: { signal?: AbortSignal } = {}): Promise<SshLease> {
    if (this.closed) throw new Error('the SSH pool is closed');
    const key = poolKey(target);
    let entry = this.entries.get(key);
    if (entry?.client?.closed) {
      this.drop(entry);
      entry = undefined;
    }
    if (!entry) entry = this.open(key, target);
    // Connecting is shared, so one caller's cancellation must not abort it for the others.
    const client = await new Promise<SshClient>((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted) return reject(new CancelledError(`connecting to ${targetLabel(target)}`));
      const onAbort = (): void => reject(new CancelledError(`connecting to ${targetLabel(target)}`));
      signal?.addEventListener('abort', onAbort, { once: true });
      entry.connecting.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort));
    });
    if (this.closed || client.closed) {
      throw new CancelledError(`connection to ${client.label}`);
    }
    entry.refs++;
    clearTimeout(entry.idle);
    entry.idle = undefined;
    let released = false;
    return {
      client,
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        this.scheduleIdle(entry);
      },
    };
  }

  /** Run `fn` with a leased connection, releasing it afterwards. */
  async use<T>(target: SshTarget, fn: (client: SshClient) => Promise<T>, options: { signal?: AbortSignal } = {}): Promise<T> {
    const lease = await this.acquire(target, options);
    try {
      return await fn(lease.client);
    } finally {
      lease.release();
    }
  }

  /** Close every connection, leased or not; later acquires fail. */
  async close(): Promise<void> {
    this.closed = true;
    const entries = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(
      entries.map(async (entry) => {
        clearTimeout(entry.idle);
        const client = await entry.connecting.catch(() => undefined);
        await client?.close();
      }),
    );
  }

  private open(key: string, target: SshTarget): Entry {
    const entry: Entry = { key, connecting: SshClient.connect(target, this.options.connect), refs: 0 };
    this.entries.set(key, entry);
    entry.connecting.then(
      (client) => {
        entry.client = client;
        client.onClose(() => this.drop(entry));
        // Nobody may be waiting any more (all callers cancelled): close it when idle.
        this.scheduleIdle(entry);
      },
      () => this.drop(entry),
    );
    return entry;
  }

  private scheduleIdle(entry: Entry): void {
    if (entry.refs > 0 || !entry.client || entry.idle) return;
    entry.idle = setTimeout(() => {
      this.drop(entry);
      void entry.client?.close();
    }, this.idleMs);
    // The idle timer alone must not keep a finished process alive.
    entry.idle.unref();
  }

  private drop(entry: Entry): void {
    clearTimeout(entry.idle);
    entry.idle = undefined;
    if (this.entries.get(entry.key) === entry) this.entries.delete(entry.key);
  }
}
