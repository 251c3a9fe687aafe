/**
 * `kubedos schedule` end to end: the real CLI (dist, as a subprocess) against the test run's dev
 * server through TEMPORAL_ADDRESS, with a KUBEDOS_HOME of its own (its local store receives the
 * staged plans). Schedules are real Temporal Schedules: read back through the SDK as the UI and
 * the `temporal` CLI see them. No worker polls the control queue here, so a triggered rebuildHerd
 * run stays running — which is what the overlap policy (skip) is tested against.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultPayloadConverter } from '@temporalio/common';
import type { RebuildHerdInput } from '../../workflows/rebuild-herd';
import { decodeHistoryPayloads } from '../../src/cli/history';
import { cliEnv, kubedos } from '../support/cli';
import { connectTestEnv, testAddress, type TestEnv } from '../support/temporal';

let env: TestEnv;
let home: string;
let specDir: string;
let cli: NodeJS.ProcessEnv;
const platform = `s${randomUUID().slice(0, 8)}`;
const started: string[] = [];

const spec = (overrides: { disk?: string; nightly?: string } = {}) => `
apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata:
  name: ${platform}
base:
  sourceDateEpoch: 1735689600
images:
  worker:
    disk: { size: ${overrides.disk ?? '2GiB'} }
    outputs: [qcow2]
targets:
  sim:
    type: hollow
fleets:
  workers: { image: worker, target: sim, replicas: 2 }
schedules:
  nightly:
    cron: "${overrides.nightly ?? '0 3 * * *'}"
  weekly:
    cron: "0 4 * * sun"
    timezone: Europe/Berlin
    paused: true
  monthly-build:
    cron: "0 2 1 * *"
    action: build
`;

interface Applied {
  schedule: string;
  id: string;
  outcome: 'created' | 'updated';
  paused: boolean;
  images: { image: string; planDigest: string; fleets: string[] }[];
}

beforeAll(async () => {
  env = await connectTestEnv();
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-schedule-home-'));
  specDir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-schedule-spec-'));
  writeFileSync(path.join(specDir, 'kubedos.yaml'), spec());
  cli = cliEnv({ KUBEDOS_HOME: home, TEMPORAL_ADDRESS: testAddress() });
});

afterAll(async () => {
  for await (const s of env.client.schedule.list()) {
    if (s.scheduleId.startsWith(`schedule/${platform}/`)) await env.client.schedule.getHandle(s.scheduleId).delete().catch(() => undefined);
  }
  for (const id of started) await env.client.workflow.getHandle(id).terminate('schedule-cli test done').catch(() => undefined);
  await env?.close();
  rmSync(home, { recursive: true, force: true });
  rmSync(specDir, { recursive: true, force: true });
});

async function ok(args: string[]): Promise<string> {
  const r = await kubedos(args, cli);
  if (r.code !== 0) throw new Error(`kubedos ${args.join(' ')} exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

const describeJson = async (ref: string) => JSON.parse(await ok(['schedule', 'describe', ref, '--json']));

let applied: Applied[];

test('apply creates every schedule of the spec; its action holds digests of plans staged in the store', async () => {
  applied = JSON.parse(await ok(['schedule', 'apply', specDir, '--json'])).schedules;
  expect(applied.map((a) => [a.schedule, a.outcome, a.paused])).toEqual([
    [`${platform}/nightly`, 'created', false],
    [`${platform}/weekly`, 'created', true],
    [`${platform}/monthly-build`, 'created', false],
  ]);
  const [nightly, , monthly] = applied;
  expect(nightly!.id).toBe(`schedule/${platform}/nightly`);
  expect(nightly!.images).toEqual([{ image: 'worker', planDigest: expect.stringMatching(/^[0-9a-f]{64}$/), fleets: ['workers'] }]);
  expect(monthly!.images).toEqual([{ image: 'worker', planDigest: nightly!.images[0]!.planDigest, fleets: [] }]); // build only
  // The plan is in the store, content-addressed.
  const digest = nightly!.images[0]!.planDigest;
  const blob = readFileSync(path.join(home, 'store', 'blobs', 'sha256', digest.slice(0, 2), digest));
  expect(createHash('sha256').update(blob).digest('hex')).toBe(digest);

  // What the server holds: a Temporal Schedule, overlap skip, starting rebuildHerd on the control
  // queue with that digest — and the argument encrypted by the payload codec.
  const d = await env.client.schedule.getHandle(nightly!.id).describe();
  expect(d.policies.overlap).toBe('SKIP');
  expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: 'rebuildHerd', taskQueue: 'kubedos-control', workflowId: `rebuild-herd/${platform}/nightly` });
  const input = (d.action as { args: RebuildHerdInput[] }).args[0]!;
  expect(input).toEqual({ platform, images: [{ image: 'worker', manufacture: expect.objectContaining({ image: 'worker', planDigest: digest, specDigest: expect.stringMatching(/^[0-9a-f]{64}$/) }), fleets: ['workers'] }] });
  const raw = d.raw.schedule!.action!.startWorkflow!.input!.payloads![0]!;
  expect(Buffer.from(raw.metadata!.encoding!).toString()).toBe('binary/encrypted');
  expect(Buffer.from(raw.data!).toString('latin1')).not.toContain(digest);
});

test('list and describe read them back: the cron as written, time zone, state, what runs', async () => {
  const rows = JSON.parse(await ok(['schedule', 'list', '--json'])).schedules.filter((r: { schedule: string }) => r.schedule.startsWith(`${platform}/`));
  expect(rows.map((r: Record<string, unknown>) => [r.schedule, r.when, r.timezone, r.paused, r.workflowType])).toEqual([
    [`${platform}/monthly-build`, '0 2 1 * *', 'UTC', false, 'rebuildHerd'],
    [`${platform}/nightly`, '0 3 * * *', 'UTC', false, 'rebuildHerd'],
    [`${platform}/weekly`, '0 4 * * sun', 'Europe/Berlin', true, 'rebuildHerd'],
  ]);
  const text = await ok(['schedule', 'list']);
  expect(text.split('\n')[0]).toMatch(/^SCHEDULE +WHEN +TIME ZONE +STATE +NEXT RUN +LAST RUN$/);
  expect(text).toMatch(new RegExp(`${platform}/weekly +0 4 \\* \\* sun +Europe/Berlin +paused`));

  const nightly = await ok(['schedule', 'describe', `${platform}/nightly`]);
  expect(nightly).toContain(`schedule ${platform}/nightly: active`);
  expect(nightly).toContain('  when       0 3 * * * (UTC)');
  expect(nightly).toContain(`  runs       rebuildHerd on kubedos-control as rebuild-herd/${platform}/nightly-<time>; overlap skip`);
  expect(nightly).toContain(`  images     worker: plan ${applied[0]!.images[0]!.planDigest.slice(0, 12)} → fleets workers`);
  const json = await describeJson(`${platform}/nightly`);
  expect(json.nextRuns[0]).toMatch(/T03:00:00\.000Z$/);
  expect(json.actionsTaken).toBe(0);
  // Europe/Berlin is an hour or two ahead of UTC.
  expect((await describeJson(`${platform}/weekly`)).nextRuns[0]).toMatch(/T0[23]:00:00\.000Z$/);
});

test('trigger starts rebuildHerd now with the staged input; a second trigger while it runs is skipped', async () => {
  const first = JSON.parse(await ok(['schedule', 'trigger', `${platform}/nightly`, '--json']));
  expect(first).toMatchObject({ triggered: true, workflowId: expect.stringMatching(new RegExp(`^rebuild-herd/${platform}/nightly-\\d{4}-`)) });
  started.push(first.workflowId);
  const handle = env.client.workflow.getHandle(first.workflowId);
  const info = await handle.describe();
  expect(info).toMatchObject({ type: 'rebuildHerd', taskQueue: 'kubedos-control' });
  expect(info.status.name).toBe('RUNNING');
  const history = await handle.fetchHistory();
  await decodeHistoryPayloads(history, env.client.options.loadedDataConverter.payloadCodecs);
  const input = defaultPayloadConverter.fromPayload(history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]! as never) as RebuildHerdInput;
  expect(input.images.map((i) => [i.image, i.manufacture.planDigest, i.fleets])).toEqual([['worker', applied[0]!.images[0]!.planDigest, ['workers']]]);

  const second = await kubedos(['schedule', 'trigger', `${platform}/nightly`], cli);
  expect(second.code).toBe(1);
  expect(second.stdout).toBe(`schedule/${platform}/nightly: skipped: a run is still going (overlap policy skip): ${first.workflowId}\n`);
  const d = await describeJson(`${platform}/nightly`);
  expect(d).toMatchObject({ actionsTaken: 1, skippedOverlap: 1, runningRuns: [first.workflowId] });
  expect(d.recentRuns.map((r: { workflowId: string }) => r.workflowId)).toEqual([first.workflowId]);

  // --force starts one anyway.
  const forced = JSON.parse(await ok(['schedule', 'trigger', `${platform}/nightly`, '--force', '--json']));
  expect(forced).toMatchObject({ triggered: true });
  started.push(forced.workflowId);
  expect(forced.workflowId).not.toBe(first.workflowId);
  expect((await env.client.workflow.getHandle(forced.workflowId).describe()).status.name).toBe('RUNNING');
  expect((await describeJson(`${platform}/nightly`)).actionsTaken).toBe(2);
});

test('create one from the command line; pause, unpause and delete it by its bare name', async () => {
  const name = `adhoc-${randomUUID().slice(0, 6)}`;
  const created = JSON.parse(await ok(['schedule', 'create', name, '--spec', specDir, '--cron', '*/30 * * * *', '--fleet', 'workers', '--json'])).schedules;
  expect(created).toMatchObject([{ schedule: `${platform}/${name}`, outcome: 'created', paused: false, cron: '*/30 * * * *', timezone: 'UTC' }]);
  // A bare name is looked up in the schedule list, which the server fills asynchronously.
  for (let i = 0; i < 40 && !(await ok(['schedule', 'list'])).includes(name); i++) await sleep(250);

  expect(await ok(['schedule', 'pause', name, '--note', 'maintenance window'])).toBe(`schedule/${platform}/${name}: paused\n`);
  expect(await describeJson(name)).toMatchObject({ when: '*/30 * * * *', paused: true, note: 'maintenance window' });
  expect(await ok(['schedule', 'unpause', name])).toBe(`schedule/${platform}/${name}: active\n`);
  expect((await describeJson(`${platform}/${name}`)).paused).toBe(false);
  expect(await ok(['schedule', 'delete', `${platform}/${name}`])).toBe(`schedule/${platform}/${name}: deleted\n`);
  const gone = await kubedos(['schedule', 'describe', `${platform}/${name}`], cli);
  expect(gone.code).toBe(2);
  expect(gone.stderr).toContain(`error: no schedule "${platform}/${name}"`);
});

test('mistakes are usage errors that name the field and the fix', async () => {
  const fails = async (args: string[], code: number, ...messages: string[]) => {
    const r = await kubedos(args, cli);
    expect({ args, code: r.code }).toEqual({ args, code });
    for (const m of messages) expect(r.stderr).toContain(m);
  };
  await fails(['schedule', 'create', 'x', '--spec', specDir, '--cron', '0 25 * * *'], 2,
    'error: --cron: hour field: 25 is out of range 0-23 in "0 25 * * *"',
    'hint: five fields: minute hour day-of-month month day-of-week, e.g. --cron "0 3 * * *"');
  await fails(['schedule', 'create', 'x', '--spec', specDir, '--cron', '0 3 * *'], 2, 'error: --cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4');
  await fails(['schedule', 'create', 'x', '--spec', specDir, '--cron', '0 3 * * *', '--timezone', 'Mars/Olympus'], 2, 'error: --timezone: unknown time zone "Mars/Olympus"', 'hint: an IANA name such as UTC');
  await fails(['schedule', 'create', 'nope', '--spec', specDir], 2, 'error: the spec defines no schedule "nope", so --cron is needed', 'nightly, weekly, monthly-build');
  await fails(['schedule', 'create', 'x', '--spec', specDir, '--cron', '0 3 * * *', '--fleet', 'ghosts'], 2, 'error: --fleet: no fleet named "ghosts"');
  await fails(['schedule', 'create', 'nightly', '--spec', specDir], 2, `error: schedule ${platform}/nightly already exists`, 'kubedos schedule apply SPEC` updates it');
  await fails(['schedule', 'pause', `${platform}/ghost`], 2, `error: no schedule "${platform}/ghost"`);
  await fails(['schedule', 'trigger', 'no-such-schedule-anywhere'], 2, 'error: no schedule named "no-such-schedule-anywhere"', 'kubedos schedule list');
});

test('apply again updates in place: new plan digests and cron; a schedule paused by hand stays paused', async () => {
  await ok(['schedule', 'pause', `${platform}/nightly`]);
  writeFileSync(path.join(specDir, 'kubedos.yaml'), spec({ disk: '3GiB', nightly: '30 2 * * mon-fri' }));
  const again: Applied[] = JSON.parse(await ok(['schedule', 'apply', specDir, '--json'])).schedules;
  expect(again.map((a) => [a.schedule, a.outcome, a.paused])).toEqual([
    [`${platform}/nightly`, 'updated', true],
    [`${platform}/weekly`, 'updated', true],
    [`${platform}/monthly-build`, 'updated', false],
  ]);
  const digest = again[0]!.images[0]!.planDigest;
  expect(digest).not.toBe(applied[0]!.images[0]!.planDigest);
  const d = await describeJson(`${platform}/nightly`);
  expect(d).toMatchObject({ when: '30 2 * * mon-fri', paused: true, images: [{ image: 'worker', planDigest: digest, fleets: ['workers'] }] });
  expect(d.actionsTaken).toBe(2); // the same schedule, its record kept
});
