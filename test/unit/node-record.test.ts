import { nodeRecordOf, nodeRecordTags, type NodeRecordKeys } from '../../src/targets/driver-support';

const KEYS: NodeRecordKeys = {
  nodeId: 'k-node',
  platform: 'k-platform',
  fleet: 'k-fleet',
  generation: 'k-generation',
  image: 'k-image',
  imageDigest: 'k-image-digest',
  hostname: 'k-hostname',
  machineId: 'k-machine-id',
  hostKey: 'k-host-key',
  hostKeyFingerprint: 'k-fingerprint',
};
const labels = { platform: 'prod', fleet: 'web', generation: 3, image: 'base', imageDigest: 'sha256:ab' };
const identity = { hostname: 'prod-web-0001', machineId: '0123456789abcdef0123456789abcdef', hostKeyPublic: 'ssh-ed25519 AAAA', hostKeyFingerprint: 'SHA256:xyz' };

test('a node record written as tags reads back the same', () => {
  const tags = nodeRecordTags(KEYS, 'prod-web-0001', labels, identity);
  expect(tags['k-generation']).toBe('3');
  expect(Object.keys(tags)).toHaveLength(10);
  expect(nodeRecordOf(KEYS, (k) => tags[k])).toEqual({ nodeId: 'prod-web-0001', labels, identity });
});

test.each(Object.values(KEYS))('a record without %s, or with it empty, is not a node', (key) => {
  const tags: Record<string, string> = nodeRecordTags(KEYS, 'prod-web-0001', labels, identity);
  delete tags[key];
  expect(nodeRecordOf(KEYS, (k) => tags[k])).toBeUndefined();
  if (key === KEYS.generation) return; // Number('') is 0: what "empty" means is the caller's get
  tags[key] = '';
  expect(nodeRecordOf(KEYS, (k) => tags[k])).toBeUndefined();
});

test('a generation that is not a whole number is not a node', () => {
  const tags: Record<string, string> = { ...nodeRecordTags(KEYS, 'prod-web-0001', labels, identity), 'k-generation': '1.5' };
  expect(nodeRecordOf(KEYS, (k) => tags[k])).toBeUndefined();
});
