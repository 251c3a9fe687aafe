/**
 * `kubedos runs` and `kubedos history` end to end: a fleet on hollow nodes rolls forward, then
 * onto an image whose nodes never get healthy and rolls back; the real CLI (dist, as a
 * subprocess) then finds the failed rollout through visibility and renders its history, payloads
 * decrypted with the run's codec key. The CLI talks to the test run's dev server through
 * TEMPORAL_ADDRESS (the external-cluster path), with a KUBEDOS_HOME of its own.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateCodecKey } from '../../src/temporal/codec';
import type { Timeline } from '../../src/cli/history';
import type { RunRow } from '../../src/cli/commands/runs';
import { deployUpdate, fleetWorkflowId, rolloutWorkflowId, teardownSignal, type FleetStatus } from '../../workflows/fleet-api';
import { fleetAttributes } from '../../workflows/search';
import { cliEnv, kubedos } from '../support/cli';
import { DIGEST_C, hollowHarness, readyCount, waitForStatus, type HollowHarness } from '../support/fleet';
import { connectTestEnv, testAddress, type TestEnv } from '../support/temporal';

let env: TestEnv;
let h: HollowHarness;
let run: Promise<void>;
let home: string;
let cli: NodeJS.ProcessEnv;
const platform = `p${randomUUID().slice(0, 8)}`;
const fleet = `f${randomUUID().slice(0, 8)}`;
let back: FleetStatus;
let failedNode: string;

beforeAll(async () => {
  env = await connectTestEnv();
  h = await hollowHarness(env, randomUUID().slice(0, 8));
  run = h.worker.run();
  home = mkdtempSync(path.join(os.tmpdir(), 'kubedos-runs-home-'));
  cli = cliEnv({ KUBEDOS_HOME: home, TEMPORAL_ADDRESS: testAddress() });

  const input = h.input(platform, {
    fleet,
    replicas: 2,
    target: h.target({ unhealthyImages: ['broken'] }),
    healthCheck: { type: 'readiness', timeout: 3_000, interval: 100, retries: 1 },
  });
  // Started as `kubedos deploy` starts it: with the fleet's search attributes.
  const handle = await env.client.workflow.start('fleet', {
    taskQueue: h.queue,
    workflowId: fleetWorkflowId(platform, fleet),
    args: [input],
    typedSearchAttributes: fleetAttributes(fleet, input.image.name, input.target.name, 'starting'),
  });
  await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2);
  await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'broken', digest: DIGEST_C } }] });
  back = await waitForStatus(handle, (s) => s.rollouts.length === 2 && s.phase === 'steady');
  failedNode = back.nodes.find((n) => n.state === 'failed')!.nodeId;
  await handle.signal(teardownSignal);
  await handle.result();
}, 120_000);

afterAll(async () => {
  h?.worker.shutdown();
  await run;
  const driver = h?.driver({ unhealthyImages: ['broken'] });
  for (const node of (await driver?.list({})) ?? []) await driver!.destroy(node.nodeId);
  await env?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

/** Visibility is eventually consistent: ask until the answer has settled. */
async function runsJson(args: string[], ok: (runs: RunRow[]) => boolean): Promise<RunRow[]> {
  let last: RunRow[] = [];
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    const r = await kubedos(['runs', ...args, '--json'], cli);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    last = (JSON.parse(r.stdout) as { runs: RunRow[] }).runs;
    if (ok(last)) return last;
    await sleep(250);
  }
  throw new Error(`runs ${args.join(' ')} never settled: ${JSON.stringify(last, null, 2)}`);
}

test('runs --fleet X --failed lists the rolled-back rollout, with its failure', async () => {
  expect(back.rollouts.map((r) => r.outcome)).toEqual(['completed', 'rolled-back']);
  const failed = await runsJson(['--fleet', fleet, '--failed'], (r) => r.length >= 1);
  expect(failed).toHaveLength(1);
  expect(failed[0]).toMatchObject({
    type: 'rollout',
    workflowId: rolloutWorkflowId(platform, fleet, 2),
    status: 'failed',
    fleet,
    image: 'broken',
    target: 'sim',
    phase: 'rolling-back',
  });
  expect(failed[0]!.failure).toMatch(/^RolloutRolledBack: rollout to generation 2 rolled back: 1 node\(s\) of generation 2 failed \(threshold 1\); last: .*did not pass its readiness check/);

  const text = await kubedos(['runs', '--fleet', fleet, '--failed'], cli);
  expect(text.code).toBe(0);
  expect(text.stdout.split('\n')[0]).toMatch(/^STARTED +TYPE +WORKFLOW ID +STATUS +DURATION +DETAIL$/);
  expect(text.stdout).toContain(`rollout  ${rolloutWorkflowId(platform, fleet, 2)}  failed`);
  expect(text.stdout).toContain('RolloutRolledBack: rollout to generation 2 rolled back');
});

test('runs lists every run of a fleet newest first; --type, --limit and --running narrow it', async () => {
  // The controller, two rollouts, two nodes of g1 and the failed node of g2.
  const all = await runsJson(['--fleet', fleet], (r) => r.length >= 6 && r.every((x) => x.status !== 'running'));
  expect(all.map((r) => r.type).sort()).toEqual(['fleet', 'fleetNode', 'fleetNode', 'fleetNode', 'rollout', 'rollout']);
  const starts = all.map((r) => Date.parse(r.startTime));
  expect([...starts].sort((a, b) => b - a)).toEqual(starts);
  expect(all.at(-1)).toMatchObject({ type: 'fleet', status: 'completed' });
  expect(all.find((r) => r.workflowId.endsWith(`/node/${failedNode}`))).toMatchObject({ type: 'fleetNode', status: 'completed', image: 'broken' });

  const nodes = await runsJson(['--fleet', fleet, '--type', 'fleetNode'], (r) => r.length === 3);
  expect(nodes.every((r) => r.type === 'fleetNode')).toBe(true);
  expect(await runsJson(['--fleet', fleet, '--limit', '2'], (r) => r.length === 2)).toEqual(all.slice(0, 2));
  expect(await runsJson(['--fleet', fleet, '--running'], () => true)).toEqual([]);
});

test('history of the rolled-back rollout says which node, which step, which error, which try', async () => {
  const r = await kubedos(['history', rolloutWorkflowId(platform, fleet, 2)], cli);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const out = r.stdout;
  expect(out).toMatch(new RegExp(`^rollout ${rolloutWorkflowId(platform, fleet, 2)}  FAILED after `));
  const wrong = out.slice(out.indexOf('what went wrong:'), out.indexOf('timeline:'));
  expect(wrong).toContain('rollout failed: RolloutRolledBack: rollout to generation 2 rolled back');
  for (const attempt of [1, 2]) {
    expect(wrong).toContain(
      `node ${failedNode} › try ${attempt}: awaitNodeHealthy failed (after 1 attempt): NodeUnhealthyError: node ${failedNode} did not pass its readiness check within 3 s`,
    );
  }
  // The timeline: the node child closes failed, its own history shown inside it, then the rollback.
  expect(out).toMatch(new RegExp(`✗ child fleetNode for node ${failedNode} completed: node failed after 2 tries`));
  expect(out).toContain(`┌ inside fleet/${platform}/${fleet}/node/${failedNode}`);
  // Hollow nodes are served by the workflow's own worker: their steps are local activities.
  expect(out).toMatch(/│ +\+\d+\.\d{3}s ✓ local activity createNode \(try 2\) completed/);
  expect(out).toMatch(/│ +\+\d+\.\d{3}s ✗ local activity awaitNodeHealthy \(try 2\) failed after 1 attempt\n.*│ +NodeUnhealthyError: /);
  expect(out).toContain('search attributes set: KubedosPhase=rolling-back');
  expect(out).toMatch(/✗ workflow rollout failed\n +RolloutRolledBack: rollout to generation 2 rolled back/);
  // Payloads were decrypted: results read, never ciphertext.
  expect(out).toMatch(/✓ local activity prepareImage completed\n +result: \{digest: cccccccccccc…, location: hollow:c+…\}/);
  expect(out).not.toContain('‹encrypted›');
  // Relative times only grow along the top-level timeline.
  const offsets = out.split('\n').filter((l) => /^ +\+\d/.test(l)).map((l) => Number(/\+(\d+\.\d+)s/.exec(l)![1]));
  expect([...offsets].sort((a, b) => a - b)).toEqual(offsets);
});

test('history --json of the fleet: updates, signals, the failed rollout child expanded down to the node', async () => {
  const r = await kubedos(['history', `fleet/${platform}/${fleet}`, '--json'], cli);
  expect(r.code).toBe(0);
  const t = JSON.parse(r.stdout) as Timeline;
  expect(t).toMatchObject({ workflowType: 'fleet', status: 'completed', workflowId: `fleet/${platform}/${fleet}` });
  expect(t.entries.find((e) => e.kind === 'update' && e.outcome === undefined)?.text).toBe('update deploy accepted {image: broken@cccccccccccc}');
  expect(t.entries.some((e) => e.text === 'signal teardown received')).toBe(true);
  const rollouts = t.entries.filter((e) => e.kind === 'child' && e.child?.workflowType === 'rollout' && e.outcome);
  expect(rollouts.map((e) => e.outcome)).toEqual(['ok', 'failed']);
  expect(rollouts[0]!.child!.timeline).toBeUndefined(); // only failed children are expanded by default
  const inner = rollouts[1]!.child!.timeline!;
  expect(inner.status).toBe('failed');
  const node = inner.entries.find((e) => e.child?.label === `node ${failedNode}` && e.outcome === 'failed')!;
  expect(node.child!.timeline!.entries.filter((e) => e.activity?.type === 'awaitNodeHealthy' && e.outcome === 'failed').map((e) => e.activity!.round)).toEqual([1, 2]);
  expect(t.findings).toEqual([
    expect.stringMatching(/^rollout to generation 2 › rollout failed: RolloutRolledBack: /),
    expect.stringContaining(`rollout to generation 2 › node ${failedNode} › try 1: awaitNodeHealthy failed`),
    expect.stringContaining(`rollout to generation 2 › node ${failedNode} › try 2: awaitNodeHealthy failed`),
  ]);

  const none = JSON.parse((await kubedos(['history', `fleet/${platform}/${fleet}`, '--json', '--children', 'none'], cli)).stdout) as Timeline;
  expect(none.entries.some((e) => e.child?.timeline)).toBe(false);
});

test('history without the run\'s key still shows the timeline, says what it could not decrypt and why', async () => {
  const r = await kubedos(['history', rolloutWorkflowId(platform, fleet, 2), '--children', 'none'], { ...cli, KUBEDOS_CODEC_KEY: generateCodecKey() });
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/warning: \d+ payload\(s\) could not be decrypted and show as ‹encrypted›: a payload is encrypted with key [0-9a-f]{16}, which is not among the keys from KUBEDOS_CODEC_KEY/);
  expect(r.stderr).toContain('hint: give this process the same key');
  expect(r.stdout).toContain('input: ‹encrypted›');
  // What history records in clear still reads: types, failures, search attributes.
  expect(r.stdout).toContain('RolloutRolledBack: rollout to generation 2 rolled back');
});

test('unknown runs and bad options are usage errors with a hint', async () => {
  const missing = await kubedos(['history', `fleet/${platform}/nope`], cli);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain(`error: no run with workflow id "fleet/${platform}/nope"`);
  expect(missing.stderr).toContain('hint: `kubedos runs` lists runs');
  const bad = await kubedos(['runs', '--image', "x' OR 1=1", '--json'], cli);
  expect(bad.code).toBe(2);
  expect(JSON.parse(bad.stdout).error.message).toBe('--image: "x\' OR 1=1" is not a name');
  expect((await kubedos(['runs', '--limit', '0'], cli)).code).toBe(2);
  expect((await kubedos(['history', 'x', '--children', 'some'], cli)).code).toBe(2);
});
