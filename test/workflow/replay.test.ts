/**
 * Replay: histories recorded from real runs of the fleet, rollout and fleetNode workflows
 * (test/fixtures/histories/: happy path, automatic rollback, deploy steps as local activities
 * and as ordinary activities on another queue, an activity retry) are replayed against the
 * current workflow bundle. A change to workflow code that would send a running workflow down a
 * different path fails here with a DeterminismViolationError instead of in production.
 *
 * An intended change to what a workflow does must be versioned with patched() so these old
 * histories still replay; only then re-record the fixtures (they are runs on hollow nodes
 * against a fresh dev server, payloads stored decrypted):
 *
 *   npx ts-node --transpile-only test/fixtures/record-histories.ts
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import type { History } from '../../src/cli/history';

const DIR = path.join(__dirname, '..', 'fixtures', 'histories');
const fixtures = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

try {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
} catch {
  /* installed by another test of this worker */
}

const raw = (name: string) => JSON.parse(readFileSync(path.join(DIR, name), 'utf8')) as { events: Record<string, any>[] };
const started = (json: ReturnType<typeof raw>) => json.events[0]!.workflowExecutionStartedEventAttributes;

/**
 * Replay on the task queue the run was recorded on, as a worker of that queue does. The node
 * workflow reads workflowInfo().taskQueue (its deploy steps become local activities when they
 * run on its own queue), and a replay worker's default queue name is made up; the SDK takes an
 * explicit one, though its types leave it out.
 */
function replay(json: ReturnType<typeof raw>, name: string): Promise<void> {
  const options = {
    workflowBundle: { codePath: process.env.KUBEDOS_TEST_WORKFLOW_BUNDLE! },
    replayName: name,
    taskQueue: started(json).taskQueue.name,
  } as ReplayWorkerOptions;
  return Worker.runReplayHistory(options, historyFromJSON(json) as History, `replay-${name}`);
}

test('the fixtures cover fleet, rollout and fleetNode: happy path, rollback, local and remote steps, a retry', () => {
  const summary = fixtures.map((f) => {
    const json = raw(f);
    const close = Object.keys(json.events.at(-1)!).find((k) => k.endsWith('EventAttributes'));
    return `${f}: ${started(json).workflowType.name} ${close}`;
  });
  expect(summary).toEqual([
    'fleet-happy.json: fleet workflowExecutionCompletedEventAttributes',
    'fleet-rollback-remote.json: fleet workflowExecutionCompletedEventAttributes',
    'fleet-rollback.json: fleet workflowExecutionCompletedEventAttributes',
    'node-failed-remote.json: fleetNode workflowExecutionCompletedEventAttributes',
    'node-failed.json: fleetNode workflowExecutionCompletedEventAttributes',
    'node-ready-after-retry-remote.json: fleetNode workflowExecutionCompletedEventAttributes',
    'node-ready.json: fleetNode workflowExecutionCompletedEventAttributes',
    'rollout-completed.json: rollout workflowExecutionCompletedEventAttributes',
    'rollout-rolled-back-remote.json: rollout workflowExecutionFailedEventAttributes',
    'rollout-rolled-back.json: rollout workflowExecutionFailedEventAttributes',
  ]);
  const text = (f: string) => readFileSync(path.join(DIR, f), 'utf8');
  expect(text('rollout-rolled-back.json')).toContain('"type": "RolloutRolledBack"');
  expect(text('node-failed.json')).toContain('core_local_activity');
  expect(raw('node-failed-remote.json').events.filter((e) => e.activityTaskFailedEventAttributes)).toHaveLength(2); // awaitNodeHealthy, try 1 and 2
  // The retried start: attempt 2, carrying the first attempt's failure.
  const retried = raw('node-ready-after-retry-remote.json').events.find((e) => e.activityTaskStartedEventAttributes?.attempt === 2);
  expect(retried?.activityTaskStartedEventAttributes.lastFailure.message).toMatch(/connection reset by peer/);
});

test.each(fixtures)('%s replays against the current workflow code', async (name) => {
  await replay(raw(name), name.replace(/\.json$/, ''));
});

test('a history the code no longer matches fails replay with a DeterminismViolationError', async () => {
  // As if fleetNode had been changed to start the node before creating it.
  const json = raw('node-failed-remote.json');
  const first = json.events.find((e) => e.activityTaskScheduledEventAttributes)!;
  expect(first.activityTaskScheduledEventAttributes.activityType.name).toBe('createNode');
  first.activityTaskScheduledEventAttributes.activityType.name = 'startNode';
  await expect(replay(json, 'tampered-remote')).rejects.toThrow(DeterminismViolationError);

  // The same for a step run as a local activity, recorded as a marker.
  const local = raw('node-failed.json');
  const marker = local.events.find((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity')!;
  const payload = marker.markerRecordedEventAttributes.details.data.payloads[0];
  const data = JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8'));
  expect(data.activity_type).toBe('createNode');
  payload.data = Buffer.from(JSON.stringify({ ...data, activity_type: 'startNode' })).toString('base64');
  await expect(replay(local, 'tampered-local')).rejects.toThrow(DeterminismViolationError);
});
