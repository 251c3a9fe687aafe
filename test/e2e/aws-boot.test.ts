/**
 * The shared test image's `ami` artifact (the streamOptimized VMDK itself) booted the way an EC2
 * Nitro instance presents it, as far as QEMU (TCG) can: UEFI (OVMF), the disk behind an NVMe
 * controller, SMBIOS system vendor "Amazon EC2" (what the EC2 reader detects), and IMDS at
 * 169.254.169.254 served by the IMDS STAND-IN (test/support/imds-standin.cjs, IMDSv2 only)
 * through QEMU's guestfwd, with the user-data the aws driver launches instances with. No ENA
 * (QEMU has no model of it; the image's initramfs is checked to hold the driver in
 * format-cloud.test.ts): the NIC is virtio-net. Reaches `kubedos: ready <hostname>` with the
 * Foundry's identity, and prints how long the boot and the EC2 reader took.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { EC2_SYS_VENDOR } from '../../src/foundry/ec2-reader';
import { qemuMachine } from '../../src/foundry/tools/qemu-system';
import { userDataOf } from '../../src/targets/aws/driver';
import { generateIdentity } from '../../src/targets/identity';
import { ovmf, plainConsole } from '../support/media-boot';
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
  const doc = path.join(dir, 'imds.json');
  const userData = Buffer.from(userDataOf({ nodeId: 'p-ec2-node-0001', identity, authorizedKeys: [] }), 'base64').toString('utf8');
  await fs.writeFile(doc, JSON.stringify({ 'meta-data': { 'instance-id': instanceId, 'local-ipv4': '169.254.0.15' }, 'user-data': userData }));
  const log = path.join(dir, 'imds-requests.log');
  const token = randomBytes(24).toString('base64');
  const standIn = `${process.execPath} ${path.join(__dirname, '../support/imds-standin.cjs')} ${doc} ${token} ${log}`;
  const serialLog = path.join(dir, 'serial.log');
  const abort = new AbortController();
  const started = Date.now();
  const qemu = qemuMachine(
    {
      firmware: await ovmf(dir),
      disks: [{ file: img.artifacts.ami!, format: 'vmdk', snapshot: true, bus: 'nvme' }],
      // The guestfwd address must lie inside the user network: 169.254.0.0/16, as on EC2 the IMDS address is link-local.
      net: { network: '169.254.0.0/16', guestForwards: [{ address: '169.254.169.254', port: 80, command: standIn }] },
      smbios: { manufacturer: EC2_SYS_VENDOR, product: 't3.small' },
      boot: 'disk',
      serialLog,
      memoryMiB: 1024,
      cpus: 2,
    },
    { signal: abort.signal },
  ).catch((err: unknown) => err);
  let exited = false;
  void qemu.then(() => (exited = true));
  const ready = `kubedos: ready ${identity.hostname}`;
  const marks: Record<string, RegExp> = {
    kernel: /Linux version/,
    nvme: /nvme0n1/,
    systemd: /systemd\[1\]: |Welcome to/,
    ec2Reader: /kubedos: metadata \/usr\/lib\/kubedos\/metadata\.d\/30-ec2/,
    ec2Applied: /kubedos: ec2: instance i-[0-9a-f]+ at /,
    firstbootDone: /kubedos: firstboot done/,
    ready: new RegExp(`^${ready}`, 'm'),
  };
  const seen: Record<string, number> = {};
  let text = '';
  try {
    while (Date.now() - started < 600_000 && !exited) {
      text = plainConsole(await fs.readFile(serialLog, 'latin1').catch(() => ''));
      for (const [mark, re] of Object.entries(marks)) if (seen[mark] === undefined && re.test(text)) seen[mark] = Date.now() - started;
      if (seen.ready !== undefined) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    console.log(`ami artifact boot under TCG (UEFI, NVMe, IMDSv2 stand-in), wall ms from QEMU start: ${JSON.stringify(seen)}; EC2 reader ${seen.ec2Applied !== undefined && seen.ec2Reader !== undefined ? seen.ec2Applied - seen.ec2Reader : '?'} ms`);
    console.log(text.split('\n').filter((l) => /kubedos: (ec2|metadata|nocloud: (seed|no cidata))/.test(l)).join('\n'));
    if (seen.ready === undefined) console.log(text.slice(-8000));
    expect(text).toMatch(marks.nvme!);
    expect(text).toContain(`kubedos: ec2: instance ${instanceId} at `);
    expect(text).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
    // The one host key is the Foundry's, so the node is pinned from its first boot.
    expect(text.match(/kubedos: hostkey .*/g)).toEqual([expect.stringContaining(` ${identity.hostKeyFingerprint} `)]);
    expect(text).toMatch(marks.ready!);
    // IMDSv2 only: the token came first, every read carried it.
    const requests = (await fs.readFile(log, 'utf8')).trim().split('\n');
    expect(requests[0]).toBe('PUT /latest/api/token no-token 200');
    expect(requests.slice(1)).toEqual(['GET /latest/meta-data/instance-id token 200', 'GET /latest/meta-data/local-ipv4 token 200', 'GET /latest/user-data token 200']);
  } finally {
    abort.abort();
    await qemu;
  }
});
