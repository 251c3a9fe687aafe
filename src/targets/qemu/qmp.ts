/**
 * A minimal QMP (QEMU Machine Protocol) client over any duplex stream (a unix socket here; an SSH
 * stream-local channel would do as well): greeting, `qmp_capabilities`, then one command at a
 * time. Enough to ask a VM to quit or report its status; events are ignored.
 */
import net from 'node:net';
import { QmpError } from '../../errors';
import type { Duplex } from 'node:stream';

export interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

export class QmpClient {
  private buffer = '';
  private readonly waiting: Array<{ resolve: (r: QmpReply) => void; reject: (e: Error) => void }> = [];
  private closedError?: Error;

  private constructor(private readonly stream: Duplex) {
    stream.setEncoding?.('utf8');
    stream.on('data', (chunk: string | Buffer) => this.onData(String(chunk)));
    const onEnd = (err?: Error) => {
      this.closedError ??= err ?? new QmpError('QMP connection closed');
      for (const w of this.waiting.splice(0)) w.reject(this.closedError);
    };
    stream.on('error', onEnd);
    stream.on('close', () => onEnd());
  }

  /** Connect to a unix socket, read the greeting and leave capabilities negotiation mode. */
  static async connectUnix(socketPath: string, timeoutMs = 5_000): Promise<QmpClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ path: socketPath });
      const timer = setTimeout(() => s.destroy(new QmpError(`QMP ${socketPath}: no connection within ${timeoutMs} ms`)), timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    return QmpClient.start(socket, timeoutMs);
  }

  /** Speak QMP over an already connected stream. */
  static async start(stream: Duplex, timeoutMs = 5_000): Promise<QmpClient> {
    const client = new QmpClient(stream);
    // The greeting arrives unasked: it is the first "reply".
    await client.next(timeoutMs);
    await client.execute('qmp_capabilities', undefined, timeoutMs);
    return client;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      let msg: QmpReply & { event?: string; QMP?: unknown };
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.event) continue;
      this.waiting.shift()?.resolve(msg);
    }
  }

  private next(timeoutMs: number): Promise<QmpReply> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpError(`QMP: no reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push({
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** Run one command; rejects with QEMU's error description when it fails. */
  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 5_000): Promise<unknown> {
    const reply = this.next(timeoutMs);
    this.stream.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const r = await reply;
    if (r.error) throw new QmpError(`QMP ${command}: ${r.error.class}: ${r.error.desc}`, undefined, { retryable: false });
    return r.return;
  }

  close(): void {
    this.stream.destroy();
  }
}
