/**
 * Health checks against the booted guest, never the hypervisor: the image's readiness report, a
 * TCP connect, an HTTP status, or (through the SSH layer) a command over the node's pinned key.
 * One probe is `probeOnce`; `waitHealthy` repeats it at the spec's interval until its timeout.
 */
import net from 'node:net';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { CancelledError, KubedosError } from '../errors';
import type { HealthCheck } from '../platform/types';
import type { DriverContext, TargetDriver } from '../targets/driver';
import type { PublicIdentity } from '../targets/identity';

export interface ProbeResult {
  ok: boolean;
  /** Why it failed (or what answered), for status and history. */
  detail: string;
}

/** Runs an argv on the node over SSH with its pinned host key; provided by the SSH layer. */
export type SshProbe = (target: { host: string; port: number; hostKey: string }, argv: string[], signal?: AbortSignal) => Promise<{ exitCode: number; stderr: string }>;

export interface HealthEnv {
  driver: TargetDriver;
  nodeId: string;
  identity?: PublicIdentity;
  ssh?: SshProbe;
  ctx: DriverContext;
}

export class NodeUnhealthyError extends KubedosError {
  constructor(
    readonly nodeId: string,
    readonly check: string,
    readonly lastDetail: string,
    timeoutMs: number,
  ) {
    super(`node ${nodeId} did not pass its ${check} check within ${Math.round(timeoutMs / 1000)} s: ${lastDetail}`, 'look at the node console (kubedos status --nodes) and the image payload');
  }
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (r: ProbeResult) => {
      socket.destroy();
      resolve(r);
    };
    socket.setTimeout(timeoutMs, () => done({ ok: false, detail: `tcp ${host}:${port}: timeout` }));
    socket.once('connect', () => done({ ok: true, detail: `tcp ${host}:${port} open` }));
    socket.once('error', (err) => done({ ok: false, detail: `tcp ${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
  });
}

function httpProbe(url: string, expect: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      const ok = res.statusCode === expect;
      resolve({ ok, detail: `GET ${url} → ${res.statusCode}${ok ? '' : ` (want ${expect})`}` });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ ok: false, detail: `GET ${url}: ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
  });
}

/** One probe of the node. Network errors are results (not healthy yet), not exceptions. */
export async function probeOnce(check: HealthCheck, env: HealthEnv): Promise<ProbeResult> {
  const probeTimeout = Math.min(check.interval, 10_000) || 2_000;
  if (check.type === 'readiness') {
    const ok = await env.driver.readiness(env.nodeId, env.ctx);
    return { ok, detail: ok ? 'readiness reported' : 'readiness not reported yet' };
  }
  let address;
  try {
    address = await env.driver.address(env.nodeId, env.ctx);
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
  switch (check.type) {
    case 'tcp':
      return tcpProbe(address.host, address.ports[check.port] ?? check.port, probeTimeout);
    case 'http': {
      const port = address.ports[check.port] ?? check.port;
      return httpProbe(`http://${address.host}:${port}${check.path}`, check.expectStatus, probeTimeout);
    }
    case 'ssh': {
      if (!env.ssh) return { ok: false, detail: 'no SSH client available to run the ssh health check' };
      if (!env.identity) return { ok: false, detail: 'the node has no recorded host key to pin' };
      try {
        const r = await env.ssh({ host: address.host, port: address.ports[22] ?? 22, hostKey: env.identity.hostKeyPublic }, [...check.command], env.ctx.signal);
        return { ok: r.exitCode === 0, detail: r.exitCode === 0 ? 'ssh command exited 0' : `ssh command exited ${r.exitCode}: ${r.stderr.trim().slice(-200)}` };
      } catch (err) {
        return { ok: false, detail: `ssh: ${(err as Error).message}` };
      }
    }
  }
}

/** Probe until healthy, the check's timeout passes (NodeUnhealthyError) or the signal aborts. */
export async function waitHealthy(check: HealthCheck, env: HealthEnv, onProbe?: (r: ProbeResult, attempt: number) => void): Promise<ProbeResult> {
  const deadline = Date.now() + check.timeout;
  let last: ProbeResult = { ok: false, detail: 'not probed yet' };
  for (let attempt = 1; ; attempt++) {
    if (env.ctx.signal?.aborted) throw new CancelledError(`health check of ${env.nodeId}`);
    last = await probeOnce(check, env);
    onProbe?.(last, attempt);
    if (last.ok) return last;
    const left = deadline - Date.now();
    if (left <= 0) throw new NodeUnhealthyError(env.nodeId, check.type, last.detail, check.timeout);
    try {
      await sleep(Math.min(check.interval, left), undefined, { signal: env.ctx.signal });
    } catch {
      throw new CancelledError(`health check of ${env.nodeId}`);
    }
  }
}
