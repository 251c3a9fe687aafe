/** Run the real kubedos CLI (bin/kubedos → dist) as a subprocess, the way a user does. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../../src/exec/ports';

export const ROOT = path.resolve(__dirname, '..', '..');
export const KUBEDOS = path.join(ROOT, 'bin', 'kubedos');
export const TEMPORAL = path.join(ROOT, '.venv', 'bin', 'temporal');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Environment for a CLI run: setup already done by the test command; colour off. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KUBEDOS_SKIP_SETUP: '1', NO_COLOR: '1', ...extra };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return env;
}

/** Run kubedos to completion (async, so the jest process keeps serving workers meanwhile). */
export function kubedos(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(KUBEDOS, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kubedos ${args.join(' ')} timed out\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Start a long-running kubedos command (dev) and resolve once stderr shows `ready`. */
export function startLongRunning(args: string[], env: NodeJS.ProcessEnv, ready: RegExp, timeoutMs = 90_000): Promise<{ child: ChildProcess; output: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(KUBEDOS, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d: Buffer) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve({ child, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`kubedos ${args.join(' ')} exited early (${code}):\n${out}`)));
    const timer = setTimeout(() => reject(new Error(`kubedos ${args.join(' ')} not ready:\n${out}`)), timeoutMs);
  });
}

/** `temporal workflow list` against an address, as JSON. */
export function temporalWorkflowIds(address: string): string[] {
  const r = spawnSync(TEMPORAL, ['workflow', 'list', '--address', address, '--output', 'json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`temporal workflow list failed: ${r.stderr}`);
  const parsed = JSON.parse(r.stdout || '[]') as Array<{ execution: { workflowId: string } }>;
  return parsed.map((w) => w.execution.workflowId);
}

/** Alive means running: a zombie (exited, not yet reaped by its new parent) counts as gone. */
export function pidAlive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Ports of their own for a test stack that is killed and restarted: a home keeps the ports it
 * had, and another suite's fresh stack (which tries 7233 first) may take the default meanwhile.
 */
export async function pinnedStackPorts(): Promise<{ KUBEDOS_TEMPORAL_PORT: string; KUBEDOS_UI_PORT: string }> {
  return { KUBEDOS_TEMPORAL_PORT: String(await freePort()), KUBEDOS_UI_PORT: String(await freePort()) };
}
