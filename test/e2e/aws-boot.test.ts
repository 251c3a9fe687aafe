/**
 * The shared test image's `ami` artifact (the streamOptimized VMDK itself) booted the way an EC2
 * Nitro instance presents it, as far as QEMU (TCG) can (test/support/ec2-boot.ts: UEFI, NVMe,
 * SMBIOS vendor "Amazon EC2", IMDS at 169.254.169.254 served by the IMDS STAND-IN through
 * guestfwd; virtio-net instead of ENA, which QEMU does not model and format-cloud.test.ts checks
 * is in the initramfs), with the user-data the aws driver launches instances with. It reaches
 * `kubedos: ready <hostname>` with the Foundry's identity, and prints how long the boot and the
 * EC2 reader took (bench/aws-boot.ts compares that with Debian's cloud-init).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { userDataOf } from '../../src/targets/aws/driver';
import { generateIdentity } from '../../src/targets/identity';
import { bootLikeEc2, EC2_BOOT_MARKS } from '../support/ec2-boot';
import { builtImage, type BuiltImage } from '../support/images';

jest.setTimeout(15 * 60 * 1000);

let img: BuiltImage;
let dir: string;

beforeAll(async () => {
  img = await builtImage();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-aws-boot-'));
});
afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('the ami artifact boots under UEFI from NVMe, takes its identity from IMDSv2 (stand-in) with its EC2 reader, and reports ready', async () => {
  const identity = generateIdentity('ec2-node-1');
  const instanceId = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
  const userData = Buffer.from(userDataOf({ nodeId: 'p-ec2-node-0001', identity, authorizedKeys: [] }), 'base64').toString('utf8');
  const { seen, console: text, requests } = await bootLikeEc2({
    disk: { file: img.artifacts.ami!, format: 'vmdk' },
    imds: { 'meta-data': { 'instance-id': instanceId, 'local-ipv4': '169.254.0.15' }, 'user-data': userData },
    dir,
    marks: EC2_BOOT_MARKS(identity.hostname),
    until: 'ready',
  });
  console.log(`ami artifact boot under TCG (UEFI, NVMe, IMDSv2 stand-in), wall ms from QEMU start: ${JSON.stringify(seen)}\n${text.split('\n').filter((l) => /kubedos: ec2:/.test(l)).join('\n')}`);
  if (seen.ready === undefined) console.log(text.slice(-8000));
  expect(text).toMatch(/nvme0n1/);
  expect(text).toContain(`kubedos: ec2: instance ${instanceId} at `);
  expect(text).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
  // The one host key is the Foundry's, so the node is pinned from its first boot.
  expect(text.match(/kubedos: hostkey .*/g)).toEqual([expect.stringContaining(` ${identity.hostKeyFingerprint} `)]);
  expect(seen.ready).toBeDefined();
  // IMDSv2 only: the token came first (asked again when a slow answer timed out), every read carried it.
  expect(requests[0]).toBe('PUT /latest/api/token no-token 200');
  expect(requests.filter((r) => !r.startsWith('PUT /latest/api/token '))).toEqual(['GET /latest/meta-data/instance-id token 200', 'GET /latest/meta-data/local-ipv4 token 200', 'GET /latest/user-data token 200']);
});
