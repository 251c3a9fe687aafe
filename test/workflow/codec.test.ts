/**
 * Secrets never reach history in clear, against the real dev server: a run with a secret in its
 * input, memo and activity result leaves only ciphertext in the raw history (the bytes the server
 * stores and serves), while the client with the codec reads the result. The `temporal` CLI shows
 * the secret only through the codec endpoint. Last, the embedded stack end to end: a generated key
 * under a fresh KUBEDOS_HOME, the codec daemon, and the Web UI pointed at it.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { JSONToPayload, payloadToJSON, type JSONPayload } from '@temporalio/common/lib/proto-utils';
import { temporal } from '@temporalio/proto';
import type { Worker } from '@temporalio/worker';
import type { PoolReport } from '../../workflows/doctor';
import type { PoolProbe } from '../../src/exec/probe';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, homeCodecKeyFile, loadCodecKeyring, parseCodecKey } from '../../src/temporal/codec';
import { startCodecServer, type CodecServer } from '../../src/temporal/codec-server';
import { createPoolWorker } from '../../workers/run-pool';
import { TEMPORAL, cliEnv, kubedos, pidAlive } from '../support/cli';
import { connectTestEnv, testAddress, testPoolWorker, type TestEnv } from '../support/temporal';

jest.setTimeout(240_000);
const run = promisify(execFile);

const SECRET = `db-password-${randomUUID()}`;
const str = (b?: Uint8Array | null) => Buffer.from(b ?? []).toString('utf8');

let env: TestEnv;
beforeAll(async () => {
  env = await connectTestEnv();
});
afterAll(async () => env?.close());

/** A vsphere probe that "leaks" the secret in its result, as a careless activity would. */
const leakyProbe = (taskQueue: string): PoolProbe => ({
  pool: 'vsphere', taskQueue, ok: false, missing: [`log in with ${SECRET}`], tools: [], files: [], plugins: [], host: SECRET, pid: 1, node: process.version,
});

interface Ran {
  workflowId: string;
  reports: PoolReport[];
  /** The raw GetWorkflowExecutionHistory response, serialized: exactly what the server serves. */
  rawHistory: Buffer;
  history: temporal.api.history.v1.IHistory;
}

/**
 * Run doctor with the secret in the workflow input (an extra field), the memo and the activity
 * result. `plain` runs client and workers without the codec: the control case that shows the
 * search below finds a leak when there is one.
 */
async function runWithSecret(plain: boolean): Promise<Ran> {
  const id = randomUUID().slice(0, 8);
  const queues = { control: `c-${id}-control`, vsphere: `c-${id}-vsphere` };
  const dataConverter = plain ? { dataConverter: {} } : {};
  const bundle = { workflowBundle: { codePath: process.env.KUBEDOS_TEST_WORKFLOW_BUNDLE! } };
  const workers: Worker[] = [
    plain
      ? await createPoolWorker('control', env.nativeConnection, 'default', {}, { taskQueue: queues.control, ...bundle, ...dataConverter })
      : await testPoolWorker(env, 'control', queues.control),
    plain
      ? await createPoolWorker('vsphere', env.nativeConnection, 'default', { probeCapabilities: async () => leakyProbe(queues.vsphere) }, { taskQueue: queues.vsphere, ...dataConverter })
      : await testPoolWorker(env, 'vsphere', queues.vsphere, { probeCapabilities: async () => leakyProbe(queues.vsphere) }),
  ];
  const client = plain ? new Client({ connection: env.client.connection, namespace: 'default' }) : env.client;
  const workflowId = `codec-${plain ? 'plain' : 'sealed'}-${id}`;
  const runs = workers.map((w) => w.run());
  let reports: PoolReport[];
  try {
    reports = (await client.workflow.execute('doctor', {
      taskQueue: queues.control,
      workflowId,
      args: [{ pools: ['vsphere'], pickupTimeout: '20s', taskQueues: queues, credential: SECRET }],
      memo: { owner: `ops ${SECRET}` },
    })) as PoolReport[];
  } finally {
    for (const w of workers) w.shutdown();
    await Promise.all(runs);
  }
  const response = await env.client.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId } });
  const rawHistory = Buffer.from(temporal.api.workflowservice.v1.GetWorkflowExecutionHistoryResponse.encode(response).finish());
  return { workflowId, reports, rawHistory, history: response.history! };
}

/** Every Payload in a history (anything with metadata.encoding), with where it was found. */
function payloadsIn(value: unknown, where = 'history', out: Array<{ where: string; payload: Payload }> = []) {
  if (!value || typeof value !== 'object' || ArrayBuffer.isView(value)) return out;
  const v = value as Record<string, unknown>;
  if (v.metadata && typeof v.metadata === 'object' && 'encoding' in (v.metadata as object)) {
    out.push({ where, payload: v as Payload });
    return out;
  }
  for (const [k, child] of Object.entries(v)) payloadsIn(child, `${where}.${k}`, out);
  return out;
}

describe('against the test run’s dev server', () => {
  let sealed: Ran;
  let plain: Ran;
  beforeAll(async () => {
    [sealed, plain] = await Promise.all([runWithSecret(false), runWithSecret(true)]);
  });

  test('the client with the codec reads the result in clear', () => {
    expect(sealed.reports).toEqual([expect.objectContaining({ pool: 'vsphere', state: 'degraded', probe: expect.objectContaining({ host: SECRET }) })]);
  });

  test('the secret appears nowhere in the raw history: input, memo, activity result and workflow result are ciphertext', () => {
    expect(sealed.rawHistory.length).toBeGreaterThan(500);
    expect(sealed.rawHistory.includes(SECRET)).toBe(false);
    expect(sealed.rawHistory.includes(Buffer.from(SECRET).toString('base64').slice(0, 24))).toBe(false);

    const found = payloadsIn(sealed.history).filter((p) => !p.where.includes('searchAttributes'));
    const where = found.map((p) => p.where);
    expect(where).toEqual(expect.arrayContaining([
      expect.stringMatching(/workflowExecutionStartedEventAttributes\.input/),
      expect.stringMatching(/workflowExecutionStartedEventAttributes\.memo/),
      expect.stringMatching(/activityTaskCompletedEventAttributes\.result/),
      expect.stringMatching(/workflowExecutionCompletedEventAttributes\.result/),
    ]));
    const keyId = loadCodecKeyring().current.id;
    for (const { where: w, payload } of found) {
      expect({ w, encoding: str(payload.metadata!.encoding), keyId: str(payload.metadata![KEY_ID_METADATA]) }).toEqual({ w, encoding: ENCRYPTED_ENCODING, keyId });
    }
  });

  test('…yet the secret is in there, encrypted: decoding the stored payloads with the key finds it', async () => {
    const codec = new AesGcmPayloadCodec(loadCodecKeyring());
    const decoded = await codec.decode(payloadsIn(sealed.history).map((p) => p.payload));
    expect(decoded.filter((p) => str(p.data).includes(SECRET)).length).toBeGreaterThanOrEqual(4);
  });

  test('control: without the codec the same run leaves the secret in the raw history (so the search above can fail)', () => {
    expect(plain.reports[0]!.probe!.host).toBe(SECRET);
    expect(plain.rawHistory.includes(SECRET)).toBe(true);
  });

  describe('the temporal CLI and the codec endpoint', () => {
    let server: CodecServer;
    beforeAll(async () => {
      server = await startCodecServer({ codec: new AesGcmPayloadCodec(loadCodecKeyring()), allowedOrigins: [] });
    });
    afterAll(() => server?.close());

    // Async on purpose: the codec endpoint answers from this process while the CLI runs.
    const show = async (workflowId: string, ...extra: string[]) =>
      (await run(TEMPORAL, ['workflow', 'show', '--workflow-id', workflowId, '--address', testAddress(), '--output', 'json', ...extra], { maxBuffer: 16 << 20 })).stdout;

    /** The payloads of `temporal workflow show --output json` (proto JSON: base64 metadata and data). */
    const shownPayloads = (out: string) =>
      payloadsIn(JSON.parse(out)).map(({ payload }) => {
        const json = payload as unknown as JSONPayload;
        return { encoding: Buffer.from(json.metadata!.encoding!, 'base64').toString(), data: Buffer.from(json.data ?? '', 'base64').toString() };
      });

    test('`temporal workflow show` without the codec shows ciphertext only', async () => {
      const shown = shownPayloads(await show(sealed.workflowId));
      expect(shown.length).toBeGreaterThanOrEqual(4);
      expect(new Set(shown.map((p) => p.encoding))).toEqual(new Set([ENCRYPTED_ENCODING]));
      expect(shown.some((p) => p.data.includes(SECRET))).toBe(false);
    });

    test('with --codec-endpoint it shows the secret: the endpoint speaks Temporal’s remote codec protocol', async () => {
      const shown = shownPayloads(await show(sealed.workflowId, '--codec-endpoint', server.url));
      expect(shown.length).toBeGreaterThanOrEqual(4);
      expect(new Set(shown.map((p) => p.encoding))).toEqual(new Set(['json/plain']));
      expect(shown.filter((p) => p.data.includes(SECRET)).length).toBeGreaterThanOrEqual(4);
    });
  });
});

describe('the embedded stack: generated key, codec daemon, Web UI pointed at it', () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-codec-home-'));
  // No KUBEDOS_CODEC_KEY: the default path, a key generated under the fresh home.
  const cli = cliEnv({ KUBEDOS_HOME: home, KUBEDOS_POOLS: 'control', KUBEDOS_CODEC_KEY: undefined, KUBEDOS_CODEC_KEY_FILE: undefined, TEMPORAL_ADDRESS: undefined });
  afterAll(async () => {
    await kubedos(['stack', 'stop'], cli).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });

  test('stack start → doctor → the UI’s codec endpoint decrypts the run → stop', async () => {
    expect(existsSync(path.join(__dirname, '..', '..', 'dist', 'src', 'temporal', 'codec-server.js'))).toBe(true);
    const started = await kubedos(['stack', 'start', '--json'], cli);
    expect(started.code).toBe(0);
    const stack = JSON.parse(started.stdout) as { address: string; uiUrl: string; codecEndpoint: string; codecRunning: boolean; pools: Array<{ pool: string; running: boolean }> };
    expect(stack.codecEndpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(stack.codecRunning).toBe(true);
    expect(stack.pools).toEqual([expect.objectContaining({ pool: 'control', running: true })]);

    // The key: generated once, private, and the one the stack's processes use.
    const keyFile = homeCodecKeyFile(home);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const keyId = parseCodecKey(readFileSync(keyFile, 'utf8'), keyFile).id;

    // The Web UI of the dev server is configured with the endpoint.
    const settings = (await (await fetch(`${stack.uiUrl}/api/v1/settings`)).json()) as { Codec: { Endpoint: string } };
    expect(settings.Codec.Endpoint).toBe(stack.codecEndpoint);

    // A run through the CLI and the stack's worker, both on the home's key.
    const doctor = await kubedos(['doctor', '--json', '--pools', 'control', '--require', 'control'], cli);
    expect(doctor.code).toBe(0);
    const { workflowId } = JSON.parse(doctor.stdout) as { workflowId: string };

    const connection = await Connection.connect({ address: stack.address });
    let result: Payload;
    try {
      const { history } = await connection.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId } });
      const completed = history!.events!.find((e) => e.workflowExecutionCompletedEventAttributes)!;
      result = completed.workflowExecutionCompletedEventAttributes!.result!.payloads![0]!;
    } finally {
      await connection.close();
    }
    expect(str(result.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(str(result.metadata![KEY_ID_METADATA])).toBe(keyId);

    // What the UI does in the browser: a preflight, then POST /decode from its origin.
    const origin = new URL(stack.uiUrl).origin;
    const pre = await fetch(`${stack.codecEndpoint}/decode`, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe(origin);
    const res = await fetch(`${stack.codecEndpoint}/decode`, {
      method: 'POST',
      headers: { Origin: origin, 'Content-Type': 'application/json', 'X-Namespace': 'default' },
      body: JSON.stringify({ payloads: [payloadToJSON(result)] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const [clear] = ((await res.json()) as { payloads: JSONPayload[] }).payloads;
    expect(defaultPayloadConverter.fromPayload(JSONToPayload(clear!))).toEqual([expect.objectContaining({ pool: 'control', state: 'ok' })]);

    const state = JSON.parse(readFileSync(path.join(home, 'stack.json'), 'utf8')) as { codec: { pid: number }; codecPort: number };
    const stopped = await kubedos(['stack', 'stop', '--json'], cli);
    expect(stopped.code).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ codecRunning: false, codecEndpoint: stack.codecEndpoint });
    expect(pidAlive(state.codec.pid)).toBe(false);
  });
});
