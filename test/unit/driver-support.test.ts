/** The helpers target drivers share: the one node-id rule, checked against the ids nodeName() makes. */
import { checkNodeId, mapLimited } from '../../src/targets/driver-support';
import { nodeName } from '../../workflows/fleet-api';

const template = (platform: string, fleet: string) => ({ platform, fleet, hostnamePrefix: 'h' });

test('every node id nodeName() makes passes, on every target', () => {
  const longest = 'a'.repeat(62) + 'z';
  for (const [platform, fleet, ordinal] of [['p', 'f', 0], ['lab', 'web-2', 17], ['p1', 'workers', 123_456], [longest, longest, 99_999]] as const) {
    const { nodeId } = nodeName(template(platform, fleet), ordinal);
    expect(() => checkNodeId(nodeId)).not.toThrow();
    if (nodeId.length <= 63) expect(() => checkNodeId(nodeId, { dnsName: true })).not.toThrow();
  }
});

test('anything else is refused before it reaches a path or a command line', () => {
  for (const bad of ['', '-p-f-0001', 'p-f-', 'P-f-0001', 'p.f-0001', '..', 'p/../f', 'p-f-$(id)', 'p f', '0p-f-0001', 'a'.repeat(256)]) {
    expect(() => checkNodeId(bad)).toThrow(/invalid node id/);
  }
});

test('where a node id names a VM by DNS name, it is one label of at most 63 characters', () => {
  expect(() => checkNodeId('a'.repeat(63), { dnsName: true })).not.toThrow();
  expect(() => checkNodeId('a'.repeat(64), { dnsName: true })).toThrow(/DNS label of at most 63/);
  expect(() => checkNodeId('a'.repeat(64))).not.toThrow();
});

test('mapLimited keeps order and never runs more than the limit at once', async () => {
  let running = 0;
  let most = 0;
  const out = await mapLimited([5, 1, 4, 2, 3], 2, async (n) => {
    most = Math.max(most, ++running);
    await new Promise((r) => setTimeout(r, n * 5));
    running--;
    return n * 10;
  });
  expect(out).toEqual([50, 10, 40, 20, 30]);
  expect(most).toBe(2);
});
