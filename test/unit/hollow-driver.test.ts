/**
 * The hollow driver under a worker killed mid-step: a start whose pid was never recorded (the
 * worker died between spawning the node and writing its pid file) is adopted by the retry, never
 * doubled, and destroy stops every process of the node. Found by bench/chaos (SIGKILLed control
 * worker during a rollout). Runs the real kubedos-hollow-node binary.
 */
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processesMatching } from '../../src/exec/daemon';
import type { HollowTargetSpec } from '../../src/targets/hollow';
import { HollowDriver } from '../../src/targets/hollow/driver';
import { generateIdentity } from '../../src/targets/identity';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-hollow-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const driver = () => new HollowDriver('sim', { type: 'hollow', bootDelay: 0, unhealthyImages: [] } as HollowTargetSpec, { stateDir: tmp });
const nodeDir = (nodeId: string) => path.join(tmp, 'nodes', nodeId);
const processesOf = (nodeId: string) => processesMatching((argv) => argv.includes(nodeDir(nodeId)));

test('a start whose pid was never recorded is adopted, not doubled; destroy stops it', async () => {
  const nodeId = 'p-web-0001';
  const labels = { platform: 'p', fleet: 'web', generation: 1, image: 'i', imageDigest: 'd'.repeat(64) };
  await driver().create({ nodeId, labels, identity: generateIdentity('web-0001'), image: { digest: 'd'.repeat(64), location: 'hollow:d' }, authorizedKeys: [] });
  await driver().start(nodeId);
  // Until the forked child has exec'd, its command line is still its parent's.
  for (let i = 0; i < 50 && !processesOf(nodeId).length; i++) await sleep(100);
  const [first] = processesOf(nodeId);
  expect(first).toBeGreaterThan(0);

  // The worker died after spawning, before its pid file (and with a half-written temporary).
  await fs.rm(path.join(nodeDir(nodeId), 'pid'));
  await fs.writeFile(path.join(nodeDir(nodeId), 'pid.tmp-999999'), '12');
  await driver().start(nodeId);
  expect(processesOf(nodeId)).toEqual([first]);
  expect((await fs.readFile(path.join(nodeDir(nodeId), 'pid'), 'utf8')).trim()).toBe(String(first));
  expect((await fs.readdir(nodeDir(nodeId))).filter((f) => f.includes('.tmp-'))).toEqual([]);

  // Recorded or not, destroy stops every process of the node.
  await fs.rm(path.join(nodeDir(nodeId), 'pid'));
  await driver().destroy(nodeId);
  for (let i = 0; i < 50 && processesOf(nodeId).length; i++) await sleep(100);
  expect(processesOf(nodeId)).toEqual([]);
});
