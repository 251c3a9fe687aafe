/**
 * Deploy refuses an artifact that does not verify. A fleet on a target that consumes qcow2 bytes
 * (a hollow driver that also demands the artifact, since no VM is needed to check this path) is
 * deployed from a real signed publication in a real local store; then a publication whose blob
 * has a flipped byte, and one that is unsigned, are refused before any node is touched, and
 * generation N keeps serving.
 */
import { createHash, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { artifactsFromStore, createDeployActivities } from '../../activities/deploy';
import type { BuildManifest } from '../../src/foundry/manifest';
import { LocalStore } from '../../src/store/local';
import { publishBuild } from '../../src/store/publish';
import { FoundrySigner } from '../../src/store/signing';
import { signatureRefOf } from '../../src/store/store';
import type { ImageSource } from '../../src/targets/driver';
import { HollowDriver } from '../../src/targets/hollow/driver';
import type { HollowTargetSpec } from '../../src/targets/hollow';
import { deployUpdate, teardownSignal } from '../../workflows/fleet-api';
import { hollowHarness, readyCount, startFleet, waitForStatus, type HollowHarness } from '../support/fleet';
import { connectTestEnv, testPoolWorker, type TestEnv } from '../support/temporal';

/** A hollow driver that, like the QEMU driver, needs the verified qcow2 (the fleet's artifactFormat) before it makes nodes. */
class BytesHollowDriver extends HollowDriver {
  readonly seen: string[] = [];
  override async prepare(image: ImageSource) {
    if (!image.artifact) throw new Error('prepare was called without the verified artifact');
    this.seen.push(image.artifact.sha256);
    return super.prepare(image);
  }
}

let env: TestEnv;
let h: HollowHarness;
let tmp: string;
let store: LocalStore;
let signer: FoundrySigner;
let worker: Worker;
let running: Promise<void>;
let driver: BytesHollowDriver;
const queue = `t-${randomUUID().slice(0, 8)}-kvm`;

async function publish(name: string) {
  const outputDir = await fs.mkdtemp(path.join(tmp, `out-${name}-`));
  const data = Buffer.from(`${name}:${Math.random()}:`.repeat(4000));
  await fs.writeFile(path.join(outputDir, `${name}.qcow2`), data);
  const sha256 = createHash('sha256').update(data).digest('hex');
  const hex = (s: string) => createHash('sha256').update(s).digest('hex');
  const manifest: BuildManifest = {
    schema: 'kubedos.build-manifest/v1', image: { name: 'worker', role: 'worker', hostname: 'worker' },
    inputDigest: hex(`in:${name}`), layerDigest: hex('layer'), lockDigest: hex('lock'), sourceDateEpoch: 1_700_000_000, diskSizeBytes: 1 << 30,
    artifacts: [{ format: 'qcow2', file: `${name}.qcow2`, sha256, size: data.length }],
  };
  const lockText = `${JSON.stringify({ lockVersion: 1, suite: 'bookworm', architecture: 'amd64', baseInputs: 'x', packages: [] }, null, 2)}\n`;
  const result = await publishBuild(store, { outputDir, manifest, lockText, specDigest: hex('spec'), signer });
  return { digest: result.manifest.sha256, artifact: sha256 };
}

beforeAll(async () => {
  env = await connectTestEnv();
  h = await hollowHarness(env, randomUUID().slice(0, 8));
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-fleet-verify-'));
  store = new LocalStore(path.join(tmp, 'store'));
  signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  const allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  driver = new BytesHollowDriver('sim', { type: 'hollow', bootDelay: 0, unhealthyImages: [] } as HollowTargetSpec, { stateDir: path.join(tmp, 'nodes') });
  worker = await testPoolWorker(env, 'kvm', queue, createDeployActivities({ driverFor: () => driver, fetchArtifact: artifactsFromStore(store, path.join(tmp, 'images'), allowedSigners) }) as never);
  running = Promise.all([h.worker.run(), worker.run()]).then(() => undefined);
});

afterAll(async () => {
  for (const node of await driver.list({})) await driver.destroy(node.nodeId);
  h?.worker.shutdown();
  worker?.shutdown();
  await running;
  await env?.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

test('a flipped byte and an unsigned publication are refused by deploy; N keeps serving', async () => {
  const good = await publish('good');
  const p = `p${randomUUID().slice(0, 8)}`;
  const handle = await startFleet(env, h, h.input(p, { deployQueue: queue, artifactFormat: 'qcow2', replicas: 2, image: { name: 'worker', digest: good.digest } }));
  const g1 = await waitForStatus(handle, (s) => s.phase === 'steady' && readyCount(s) === 2);
  expect(driver.seen).toEqual([good.artifact]);

  // A byte flipped in the stored qcow2 of the next publication.
  const tampered = await publish('tampered');
  const blob = store.localPath(tampered.artifact)!;
  await fs.chmod(blob, 0o644);
  const bytes = await fs.readFile(blob);
  bytes[100] ^= 1;
  await fs.writeFile(blob, bytes);
  await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'worker', digest: tampered.digest } }] });
  const refused = await waitForStatus(handle, (s) => s.rollouts.length === 2 && s.phase === 'steady');
  expect(refused.rollouts[1]!.outcome).toBe('rolled-back');
  expect(refused.lastError).toMatch(/refused on sim: .*(digest|sha256)/i);
  expect(refused.generation).toBe(1);
  expect(refused.nodes.map((n) => n.nodeId)).toEqual(g1.nodes.map((n) => n.nodeId));

  // An unsigned publication.
  const unsigned = await publish('unsigned');
  await store.deleteRef(signatureRefOf(unsigned.digest));
  await handle.executeUpdate(deployUpdate, { args: [{ image: { name: 'worker', digest: unsigned.digest } }] });
  const refused2 = await waitForStatus(handle, (s) => s.rollouts.length === 3 && s.phase === 'steady');
  expect(refused2.lastError).toMatch(/refused on sim: .*unsigned/i);
  // Each try at generation 2 is its own run, readable on its own.
  expect(refused2.rollouts.map((r) => r.workflowId.split('/').pop())).toEqual(['g1', 'g2', 'g2.2']);
  expect(refused2.nodes.map((n) => n.nodeId)).toEqual(g1.nodes.map((n) => n.nodeId));
  expect(driver.seen).toEqual([good.artifact]); // the driver never saw a bad artifact
  expect((await driver.list({ platform: p })).every((n) => n.running && n.labels.imageDigest === good.digest)).toBe(true);

  await handle.signal(teardownSignal);
  await handle.result();
});
