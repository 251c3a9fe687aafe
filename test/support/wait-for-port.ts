/** Waiting for a test daemon to listen on its TCP port. */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { logTail } from '../../src/exec/daemon';

/** Whether something accepts a connection on host:port. Connect, never bind: a probe that binds could take the port from the starting service. */
export function accepts(host: string, port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Wait until `name` (process `pid`, logging to `logFile`) listens on host:port; the log's tail in the error when it exits first or the time runs out. */
export async function waitForPort(name: string, host: string, port: number, pid: number, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await accepts(host, port)) return;
    try {
      process.kill(pid, 0);
    } catch {
      throw new Error(`${name} exited before listening:\n${logTail(logFile)}`);
    }
    await sleep(100);
  }
  throw new Error(`${name} did not listen on ${host}:${port} within ${timeoutMs} ms:\n${logTail(logFile)}`);
}
