/**
 * The history renderer over recorded histories of real runs (test/fixtures/histories/, payloads
 * stored decrypted): what `kubedos history` says about a rollback — which node, which step,
 * which error, which try — and how it reads retries, updates, signals, search attributes,
 * encrypted payloads it cannot open, and the ways a run can end.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import { temporal } from '@temporalio/proto';
import {
  buildTimeline,
  childRuns,
  decodeHistoryPayloads,
  formatDuration,
  formatOffset,
  renderTimeline,
  summarize,
  type History,
  type HistoryTree,
  type Timeline,
} from '../../src/cli/history';
import { AesGcmPayloadCodec, codecKeyring, generateCodecKey, parseCodecKey, PayloadDecryptionError } from '../../src/temporal/codec';

const load = (name: string): History => historyFromJSON(JSON.parse(readFileSync(path.join(__dirname, '..', 'fixtures', 'histories', `${name}.json`), 'utf8')));
const texts = (t: Timeline) => t.entries.map((e) => e.text);
const UNHEALTHY = (node: string) => `NodeUnhealthyError: node ${node} did not pass its readiness check within 3 s: readiness not reported yet`;

/** The rolled-back rollout with its failed node's own history inside it. */
function rolledBack(kind: 'remote' | 'local'): { tree: HistoryTree; node: string } {
  const suffix = kind === 'remote' ? '-remote' : '';
  const fleet = kind === 'remote' ? 'remote' : 'rollback';
  const node = `rec-${fleet}-0002`;
  return {
    node,
    tree: {
      history: load(`rollout-rolled-back${suffix}`),
      workflowId: `fleet/rec/${fleet}/rollout/g2`,
      children: new Map([[`fleet/rec/${fleet}/node/${node}`, { history: load(`node-failed${suffix}`) }]]),
    },
  };
}

describe('a rolled-back rollout', () => {
  test('says which node, which step, which try and which error (ordinary activities)', () => {
    const { tree, node } = rolledBack('remote');
    const t = buildTimeline(tree);
    expect(t).toMatchObject({ workflowType: 'rollout', status: 'failed', parent: 'fleet/rec/remote', failure: { type: 'RolloutRolledBack' } });
    expect(t.findings).toEqual([
      `rollout failed: RolloutRolledBack: rollout to generation 2 rolled back: 1 node(s) of generation 2 failed (threshold 1); last: ${node}: attempt 2: node ${node} did not pass its readiness check within 3 s: readiness not reported yet`,
      `node ${node} › try 1: awaitNodeHealthy failed (attempt 1 of 5; not retried: the error type is non-retryable): ${UNHEALTHY(node)}`,
      `node ${node} › try 2: awaitNodeHealthy failed (attempt 1 of 5; not retried: the error type is non-retryable): ${UNHEALTHY(node)}`,
    ]);
    const child = t.entries.find((e) => e.child && e.outcome)!;
    expect(child).toMatchObject({ kind: 'child', outcome: 'failed', text: `child fleetNode for node ${node} completed: node failed after 2 tries` });
    // The node's own steps, in order: each try creates, starts, waits for health, fails, destroys.
    const steps = child.child!.timeline!.entries.filter((e) => e.activity && e.outcome).map((e) => `${e.activity!.round}:${e.activity!.type}:${e.outcome}`);
    expect(steps).toEqual([
      '1:createNode:ok', '1:startNode:ok', '1:awaitNodeHealthy:failed', '1:destroyNode:ok',
      '2:createNode:ok', '2:startNode:ok', '2:awaitNodeHealthy:failed', '2:destroyNode:ok',
    ]);
    expect(texts(t).slice(-2)).toEqual(['search attributes set: KubedosPhase=rolling-back', 'workflow rollout failed']);
  });

  test('reads steps run as local activities from their markers', () => {
    const { tree, node } = rolledBack('local');
    const t = buildTimeline(tree);
    expect(t.findings.slice(1)).toEqual([
      `node ${node} › try 1: awaitNodeHealthy failed (after 1 attempt): ${UNHEALTHY(node)}`,
      `node ${node} › try 2: awaitNodeHealthy failed (after 1 attempt): ${UNHEALTHY(node)}`,
    ]);
    const inner = t.entries.find((e) => e.child?.timeline)!.child!.timeline!;
    expect(texts(inner).filter((x) => x.startsWith('local activity'))).toEqual([
      'local activity createNode (try 1) completed',
      'local activity startNode (try 1) completed',
      'local activity awaitNodeHealthy (try 1) failed after 1 attempt',
      'local activity destroyNode (try 1) completed',
      'local activity createNode (try 2) completed',
      'local activity startNode (try 2) completed',
      'local activity awaitNodeHealthy (try 2) failed after 1 attempt',
      'local activity destroyNode (try 2) completed',
    ]);
    // Markers are all written when the workflow task ends; the timeline uses when each step ended.
    const at = inner.entries.map((e) => e.atMs);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(at.at(-2)! - at[1]!).toBeGreaterThan(5000); // two 3 s health checks apart, not one instant
  });

  test('renders as a readable timeline with the node inside it', () => {
    const { tree, node } = rolledBack('remote');
    const out = renderTimeline(buildTimeline(tree));
    const lines = out.split('\n');
    // Times are the recording's; re-recorded fixtures have others, so they are matched by shape.
    expect(lines[0]).toMatch(/^rollout fleet\/rec\/remote\/rollout\/g2  FAILED after \d\.\d{3}s$/);
    expect(lines.slice(2, 5)).toEqual(['  parent fleet/rec/remote', '', 'what went wrong:']);
    expect(out).toContain(`  ✗ node ${node} › try 2: awaitNodeHealthy failed (attempt 1 of 5; not retried: the error type is non-retryable): ${UNHEALTHY(node)}`);
    expect(out).toMatch(new RegExp(`\n {4}\\+\\d\\.\\d{3}s ✗ child fleetNode for node ${node} completed: node failed after 2 tries\n {14}attempt 2: node ${node} did not pass`));
    expect(out).toContain(`              ┌ inside fleet/rec/remote/node/${node} (completed):`);
    expect(out).toMatch(/\n {14}│ {5}\+\d\.\d{3}s ✗ activity awaitNodeHealthy \(try 2\) failed on attempt 1 of 5; not retried: the error type is non-retryable\n {14}│ {15}NodeUnhealthyError: /);
    expect(out).toMatch(/\n {4}\+0\.\d{3}s {3}activity prepareImage scheduled on t-record-deploy\n {14}input: \{target: sim, image: broken@cccccccccccc\}/);
    expect(out).not.toMatch(/\x1b\[/);
    expect(renderTimeline(buildTimeline(tree), { color: true })).toMatch(/\x1b\[31m✗\x1b\[39m/);
    // First attempts picked up at once are quiet unless asked for.
    expect(out).not.toContain('started, attempt 1');
    expect(renderTimeline(buildTimeline(tree), { verbose: true })).toContain('activity prepareImage started, attempt 1 of 5');
  });
});

test('an activity retry shows the attempt and the failure that caused it', () => {
  const t = buildTimeline({ history: load('node-ready-after-retry-remote') });
  const retry = t.entries.find((e) => e.outcome === 'retry')!;
  expect(retry).toMatchObject({
    text: 'activity startNode (try 1) started, attempt 2 of 5 (a retry)',
    activity: { type: 'startNode', attempt: 2, maxAttempts: 5, round: 1 },
    error: { type: 'Error', message: 'connection reset by peer (a transient failure injected by record-histories.ts)' },
  });
  expect(retry.details[0]).toBe('previous attempt failed: Error: connection reset by peer (a transient failure injected by record-histories.ts)');
  expect(texts(t)).toContain('activity startNode (try 1) completed on attempt 2');
  expect(t.findings).toEqual([]); // retried and then fine: nothing went wrong
  expect(renderTimeline(t)).toMatch(/\+\d\.\d{3}s ↻ activity startNode \(try 1\) started, attempt 2 of 5 \(a retry\)/);
});

test('a fleet controller: updates, signals, phases, children and its result', () => {
  const t = buildTimeline({ history: load('fleet-happy'), workflowId: 'fleet/rec/happy' });
  expect(t).toMatchObject({ workflowType: 'fleet', status: 'completed', result: '{fleet: happy, destroyed: 3}', findings: [] });
  expect(texts(t).filter((x) => /^(update|signal)/.test(x))).toEqual([
    'update scale accepted 3',
    'update scale completed → 3',
    'update deploy accepted {image: worker@bbbbbbbbbbbb}',
    'update deploy completed → {generation: 2, unchanged: false}',
    'signal teardown received',
  ]);
  expect(texts(t).filter((x) => x.startsWith('search attributes')).map((x) => x.split('=')[1])).toEqual([
    'rolling-out', 'steady', 'scaling', 'steady', 'rolling-out', 'steady', 'tearing-down', 'destroyed',
  ]);
  expect(texts(t).filter((x) => x.startsWith('child') && x.includes('completed'))).toEqual([
    'child rollout to generation 1 completed: rollout completed: 2 node(s) of generation 1',
    'child fleetNode for node rec-happy-0002 completed: node ready in 0.1 s',
    'child rollout to generation 2 completed: rollout completed: 3 node(s) of generation 2',
  ].map((x) => expect.stringMatching(new RegExp(`^${x.replace(/[().]/g, '\\$&').replace('0\\.1', '\\d+\\.\\d')}$`))));
  expect(t.entries[0]!.details[0]).toMatch(/^input: \{platform: rec, fleet: happy, target: sim, deployQueue: t-record-control, /);
  expect(childRuns(t, 'failed')).toEqual([]);
  expect(childRuns(t, 'all').map((c) => c.workflowId)).toEqual(['fleet/rec/happy/rollout/g1', 'fleet/rec/happy/node/rec-happy-0002', 'fleet/rec/happy/rollout/g2']);
});

test('a fleet whose rollout rolled back: the failure is found two levels down', () => {
  const { tree: rollout, node } = rolledBack('local');
  const fleet = buildTimeline({ history: load('fleet-rollback'), workflowId: 'fleet/rec/rollback' });
  expect(childRuns(fleet, 'failed')).toEqual([{ workflowId: 'fleet/rec/rollback/rollout/g2', runId: expect.any(String) }]);
  const full = buildTimeline({ history: load('fleet-rollback'), workflowId: 'fleet/rec/rollback', children: new Map([['fleet/rec/rollback/rollout/g2', rollout]]) });
  expect(full.status).toBe('completed');
  expect(full.findings).toEqual([
    expect.stringMatching(/^rollout to generation 2 › rollout failed: RolloutRolledBack: /),
    `rollout to generation 2 › node ${node} › try 1: awaitNodeHealthy failed (after 1 attempt): ${UNHEALTHY(node)}`,
    `rollout to generation 2 › node ${node} › try 2: awaitNodeHealthy failed (after 1 attempt): ${UNHEALTHY(node)}`,
  ]);
  // Times of child runs share the outer run's origin, so they line up with it.
  const child = full.entries.find((e) => e.child?.timeline)!;
  const g1 = full.entries.find((e) => e.text.startsWith('child rollout to generation 1 completed'))!;
  expect(child.child!.timeline!.entries[0]!.atMs).toBeGreaterThan(g1.atMs);
  expect(child.child!.timeline!.entries[0]!.atMs).toBeLessThan(child.atMs);
});

describe('encrypted payloads', () => {
  /** Encrypt every payload of a decoded history the way the codec does on the wire. */
  function encryptAll(history: History, codec: AesGcmPayloadCodec): void {
    const walk = (node: unknown) => {
      if (typeof node !== 'object' || node === null || ArrayBuffer.isView(node)) return;
      for (const [key, value] of Object.entries(node)) {
        if (key === 'searchAttributes') continue;
        const p = value as { metadata?: Record<string, unknown> } | null;
        if (p && typeof p === 'object' && p.metadata && 'encoding' in p.metadata) (node as Record<string, unknown>)[key] = codec.encrypt(p as never);
        else walk(value);
      }
    };
    walk(history);
  }
  const key = generateCodecKey();
  const codec = () => new AesGcmPayloadCodec(codecKeyring([parseCodecKey(key, 'test')], 'test'));

  test('are decrypted with the key they were written with, back to exactly what was recorded', async () => {
    const history = load('rollout-rolled-back-remote');
    const plain = historyToJSON(history);
    encryptAll(history, codec());
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    expect(Buffer.from(input.metadata!.encoding!).toString()).toBe('binary/encrypted');
    expect(renderTimeline(buildTimeline({ history }))).toContain('input: ‹encrypted›');
    expect(await decodeHistoryPayloads(history, [codec()])).toEqual({ undecodable: 0, errors: [] });
    expect(historyToJSON(history)).toBe(plain);
  });

  test('that cannot be decrypted are counted, named and shown as ‹encrypted›; the rest still reads', async () => {
    const history = load('rollout-rolled-back-remote');
    encryptAll(history, codec());
    const other = new AesGcmPayloadCodec(codecKeyring([parseCodecKey(generateCodecKey(), 'other')], 'KUBEDOS_CODEC_KEY'));
    const { undecodable, errors } = await decodeHistoryPayloads(history, [other]);
    expect(undecodable).toBeGreaterThan(5);
    expect(errors[0]).toBeInstanceOf(PayloadDecryptionError);
    expect(errors[0]!.message).toMatch(/not among the keys from KUBEDOS_CODEC_KEY/);
    const t = buildTimeline({ history });
    expect(t.entries[0]!.details).toContain('input: ‹encrypted›');
    expect(t.entries[0]!.details).toContain('search attributes: KubedosFleet=remote, KubedosImage=broken, KubedosPhase=rolling-out, KubedosTarget=sim');
    expect(t.failure).toMatchObject({ type: 'RolloutRolledBack' }); // failures are not payloads
  });
});

test('a run that failed its workflow task and was terminated, and one still running', () => {
  const at = (s: number) => ({ seconds: 1_800_000_000 + s, nanos: 0 });
  const history = {
    events: [
      { eventId: 1, eventTime: at(0), workflowExecutionStartedEventAttributes: { workflowType: { name: 'fleet' }, taskQueue: { name: 'kubedos-control' }, attempt: 1 } },
      {
        eventId: 4,
        eventTime: at(2),
        workflowTaskFailedEventAttributes: {
          cause: temporal.api.enums.v1.WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR,
          failure: { message: '[TMPRL1100] Nondeterminism error: Activity type mismatch', applicationFailureInfo: {} },
        },
      },
      { eventId: 5, eventTime: at(65), timerStartedEventAttributes: { timerId: '1', startToFireTimeout: { seconds: 90 } } },
      { eventId: 6, eventTime: at(125), workflowExecutionTerminatedEventAttributes: { reason: 'stuck', identity: 'ops@host' } },
    ],
  } as unknown as History;
  const t = buildTimeline({ history, workflowId: 'fleet/p/f' });
  expect(t).toMatchObject({ status: 'terminated', durationMs: 125_000 });
  expect(t.findings).toEqual([
    'fleet terminated: terminated: stuck',
    'workflow task failed (non-deterministic-error): the worker could not run the workflow code: Error: [TMPRL1100] Nondeterminism error: Activity type mismatch',
  ]);
  const out = renderTimeline(t);
  expect(out.split('\n')[0]).toBe('fleet fleet/p/f  TERMINATED after 2m05.0s');
  expect(out).toContain('   +1m05.0s   timer 1 started: fires in 1m30.0s');
  expect(out).toContain('   +2m05.0s ✗ workflow fleet terminated: stuck\n              by ops@host');

  const running = buildTimeline({ history: { events: history.events!.slice(0, 1) } });
  expect(running).toMatchObject({ status: 'running', findings: [] });
  expect(running.closedAt).toBeUndefined();
  expect(running.durationMs).toBeUndefined();
  expect(renderTimeline(running).split('\n')[0]).toBe('fleet  RUNNING');
});

test('summaries: digests shortened, long strings cut, deep objects elided', () => {
  expect(summarize({ image: { name: 'worker', digest: 'a'.repeat(64) }, target: { name: 'sim', spec: { type: 'hollow' } } })).toBe('{image: worker@aaaaaaaaaaaa, target: sim}');
  expect(summarize('f'.repeat(64))).toBe('ffffffffffff…');
  expect(summarize({ a: { b: { c: 1 } }, list: [1, 2, 3, 4, 5, 6] })).toBe('{a: {b: {…}}, list: [1, 2, 3, 4, …+2]}');
  expect(summarize('two words')).toBe('"two words"');
  expect(summarize({ s: 'x'.repeat(200) }, 40)).toHaveLength(40);
  expect([formatOffset(0), formatOffset(1234), formatOffset(61_500), formatOffset(3_723_000)]).toEqual(['+0.000s', '+1.234s', '+1m01.5s', '+1h02m03s']);
  expect(formatDuration(59_999)).toBe('59.999s');
});
