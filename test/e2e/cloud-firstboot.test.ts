/**
 * The cloud images' first boot, for real: the shared test image's `azure` artifact (the fixed VHD
 * as it is) and `gce` artifact (its disk.raw) booted under QEMU (q35, OVMF, TCG) the way each
 * cloud presents itself to the guest — its DMI, its provisioning media or metadata — with
 * loopback STAND-INS of the guest-facing services the clouds run (test/support/cloud-boot.ts):
 * Azure's WireServer at 168.63.129.16 (test/support/azure-standin/wireserver.cjs) and Compute
 * Engine's metadata server at 169.254.169.254 (test/support/gce-standin/metadata.cjs). Proves that
 * the image's own readers (src/foundry/azure-reader.ts, gce-reader.ts) apply the node's identity
 * before sshd, that the Azure one reports "provisioning complete" once the network is up, and that
 * each keeps out of the other's way. bench/cloud-firstboot.ts prints what the readers cost.
 */
import { generateIdentity } from '../../src/targets/identity';
import { bootAzure, bootGce } from '../support/cloud-boot';
import { builtImage, type BuiltImage } from '../support/images';

jest.setTimeout(20 * 60 * 1000);

let img: BuiltImage;
const KEYS = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example'];

beforeAll(async () => {
  img = await builtImage();
});

test('azure VHD: identity from ovf-env.xml on the provisioning media, then "Ready" reported to the WireServer (stand-in), then "kubedos: ready"', async () => {
  const identity = generateIdentity('az-boot-1');
  const boot = await bootAzure(img, { nodeId: 'p-azure-0001', identity, authorizedKeys: KEYS });
  console.log(`azure first boot under TCG (wall ms from QEMU start): ${JSON.stringify(boot.marks)}`);
  if (!boot.complete) console.log(boot.log.slice(-8000));
  expect(boot.log).toMatch(/kubedos: azure: provisioning media on \/dev\/sr\d/);
  expect(boot.log).toContain('kubedos: azure: read ovf-env.xml with custom data');
  expect(boot.log).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
  // The one host key is the Foundry's, so the node is pinned from its first boot.
  expect(boot.log.match(/kubedos: hostkey .*/g)).toEqual([expect.stringContaining(` ${identity.hostKeyFingerprint} `)]);
  expect(boot.log).not.toMatch(/kubedos: gce:/);
  const reports = boot.standinLog.filter((r) => r.report);
  expect(reports).toEqual([{ method: 'POST', url: '/machine/?comp=health', status: 200, agent: 'kubedos', report: { incarnation: '1', containerId: boot.goal.containerId, instanceId: boot.goal.instanceId, state: 'Ready' } }]);
  expect(boot.standinLog[0]).toMatchObject({ method: 'GET', url: '/machine/?comp=goalstate', status: 200 });
  expect(boot.marks.identity).toBeLessThan(boot.marks.reported!);
  expect(boot.marks.ready).toBeDefined();
});

test('gce disk.raw: identity from the metadata server (stand-in, Metadata-Flavor: Google) before sshd, then "kubedos: ready"', async () => {
  const identity = generateIdentity('gce-boot-1');
  const boot = await bootGce(img, { nodeId: 'p-gce-0001', identity, authorizedKeys: KEYS, instanceId: '5551234567890123456' });
  console.log(`gce first boot under TCG (wall ms from QEMU start): ${JSON.stringify(boot.marks)}`);
  if (!boot.complete) console.log(boot.log.slice(-8000));
  expect(boot.log).toContain('kubedos: gce: read user-data of instance 5551234567890123456');
  expect(boot.log).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
  expect(boot.log.match(/kubedos: hostkey .*/g)).toEqual([expect.stringContaining(` ${identity.hostKeyFingerprint} `)]);
  expect(boot.log).not.toMatch(/kubedos: azure:/);
  expect(boot.standinLog.length).toBeGreaterThan(0);
  expect(boot.standinLog.every((r) => r.flavor === 'Google' && r.status === 200)).toBe(true);
  expect(boot.marks.ready).toBeDefined();
});
