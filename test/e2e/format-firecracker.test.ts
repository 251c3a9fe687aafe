/**
 * The firecracker bundle of the shared test image (test/support/images.ts), checked file by file
 * and booted. Firecracker itself needs /dev/kvm, absent here: the same vmlinux, initrd, rootfs and
 * kernel command line (boot_args plus what Firecracker appends for the root drive) boot under
 * `qemu-system-x86_64 -M microvm` (TCG): no PCI, virtio-mmio devices described only in ACPI,
 * direct PVH entry into the ELF kernel, serial console, until `kubedos: ready <hostname>`. The
 * node's identity comes through an MMDS STAND-IN (test/support/mmds-standin.cjs, answering like
 * Firecracker's MMDS V2) reached by the guest at 169.254.169.254 through QEMU's guestfwd.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { firecrackerFiles, firecrackerKernelCmdline, FIRECRACKER_EARLY_MODULES, type FirecrackerConfig } from '../../src/foundry/formats/firecracker';
import { initrdMembers, moduleName } from '../../src/foundry/initrd';
import { hasPvhEntry } from '../../src/foundry/kernel';
import { sha256File } from '../../src/foundry/lock';
import { ext4Uuid } from '../../src/foundry/root-image';
import { layerIds } from '../../src/foundry/disk';
import { debugfsRequest } from '../../src/foundry/tools/debugfs';
import { qemuMicrovmBoot } from '../../src/foundry/tools/qemu-system';
import { generateIdentity } from '../../src/targets/identity';
import { mmdsDocument } from '../../src/targets/mmds';
import { expectReproduced, layerOf } from '../support/format-context';
import { builtImage, TEST_PLAN, type BuiltImage } from '../support/images';

jest.setTimeout(30 * 60 * 1000);

let img: BuiltImage;
const files = firecrackerFiles(TEST_PLAN.image);
const at = (name: string) => path.join(img.dir, name);

beforeAll(async () => {
  img = await builtImage();
  if (img.result) console.log(`test image built in ${img.result.totalMs} ms`, img.result.timings);
});

test('the bundle is four artifacts of format firecracker in the manifest, config first, each digested', async () => {
  const entries = img.manifest.artifacts.filter((a) => a.format === 'firecracker');
  expect(entries.map((a) => a.file)).toEqual([files.config, files.kernel, files.initrd, files.rootfs]);
  for (const e of entries) {
    expect((await fs.stat(at(e.file))).size).toBe(e.size);
    expect(await sha256File(at(e.file))).toBe(e.sha256);
  }
});

test('config: every path is a bundle file; root drive writable; eth0 carries MMDS V2', async () => {
  const config = JSON.parse(await fs.readFile(at(files.config), 'utf8')) as FirecrackerConfig;
  expect(Object.keys(config).sort()).toEqual(['boot-source', 'drives', 'machine-config', 'mmds-config', 'network-interfaces']);
  expect(config['boot-source'].kernel_image_path).toBe(files.kernel);
  expect(config['boot-source'].initrd_path).toBe(files.initrd);
  expect(config.drives).toEqual([{ drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true, is_read_only: false }]);
  expect(config['mmds-config'].version).toBe('V2');
  expect(config['mmds-config'].network_interfaces).toEqual(config['network-interfaces'].map((n) => n.iface_id));
  expect(config['machine-config'].vcpu_count).toBeGreaterThanOrEqual(1);
  expect(config['boot-source'].boot_args).not.toMatch(/\broot=/); // Firecracker appends it for the root drive
});

test('vmlinux: a 64-bit x86 ELF with a PVH entry note, extracted from the layer kernel', async () => {
  const elf = await fs.readFile(at(files.kernel));
  expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  expect(hasPvhEntry(elf)).toBe(true);
  expect(elf.length).toBeGreaterThan(4 * (await fs.stat((await layerOf(img)).kernel)).size);
});

test("initrd: the image's own initramfs, holding virtio_mmio, virtio_blk and ext4", async () => {
  const layer = await layerOf(img);
  expect(await sha256File(at(files.initrd))).toBe(await sha256File(layer.initrd));
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-initrd-'));
  const names = new Set((await initrdMembers(at(files.initrd), scratch)).map(moduleName));
  for (const m of FIRECRACKER_EARLY_MODULES) expect(names).toContain(m);
});

test('rootfs: the ext4 of the disk root partition, payload applied, the UUID fstab names', async () => {
  const rootfs = at(files.rootfs);
  const uuid = await ext4Uuid(rootfs);
  expect(uuid).toBe(layerIds(img.manifest.layerDigest).rootFsUuid);
  expect((await debugfsRequest(rootfs, 'cat /etc/fstab')).stdout).toContain(`UUID=${uuid} / ext4`);
  expect((await debugfsRequest(rootfs, 'cat /etc/hostname')).stdout.trim()).toBe(TEST_PLAN.image.hostname);
  expect((await debugfsRequest(rootfs, 'ls /etc/ssh')).stdout).not.toMatch(/ssh_host_/);
  // Sparse: the ~1.9 GiB file holds well under its size in data.
  const st = await fs.stat(rootfs);
  expect(st.blocks * 512).toBeLessThan(st.size / 2);
});

/**
 * TCG only: the emulated CPU offers no way to learn its TSC frequency (no kvm-clock, and microvm
 * has no HPET, no ACPI PM timer and no PIT gate to calibrate against), and this kernel then waits
 * forever for timer ticks while calibrating. Telling it the frequency (the host's, which TCG's TSC
 * follows) is the only argument added to the Firecracker command line; under Firecracker, KVM
 * supplies kvm-clock and it is not needed.
 */
async function tcgTimingHint(): Promise<string> {
  const mhz = /cpu MHz\s*:\s*([\d.]+)/.exec(await fs.readFile('/proc/cpuinfo', 'utf8'))?.[1];
  return `tsc_early_khz=${Math.round(Number(mhz ?? 2000) * 1000)}`;
}

test('boots under qemu microvm (TCG) with the Firecracker command line, takes its identity from MMDS (stand-in), reaches "kubedos: ready <hostname>"', async () => {
  const config = JSON.parse(await fs.readFile(at(files.config), 'utf8')) as FirecrackerConfig;
  const cmdline = `${firecrackerKernelCmdline(config)} ${await tcgTimingHint()}`;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-microvm-'));
  const serial = path.join(dir, 'serial.log');
  // The node's identity, as a Firecracker driver would PUT it to /mmds before boot.
  const identity = generateIdentity('fc-node-1');
  const doc = path.join(dir, 'mmds.json');
  await fs.writeFile(doc, JSON.stringify(mmdsDocument({ instanceId: 'test-fc-node-1', identity, authorizedKeys: [] })));
  const standIn = `${process.execPath} ${path.join(__dirname, '../support/mmds-standin.cjs')} ${doc} ${createHash('sha256').update(dir).digest('hex')}`;
  const mmds = config['mmds-config'];
  const abort = new AbortController();
  const started = Date.now();
  const qemu = qemuMicrovmBoot(
    {
      kernel: at(config['boot-source'].kernel_image_path),
      initrd: at(config['boot-source'].initrd_path),
      cmdline,
      drives: config.drives.map((d) => at(d.path_on_host)),
      nics: config['network-interfaces'].map((n) => ({
        id: n.iface_id,
        ...(mmds.network_interfaces.includes(n.iface_id) ? { net: '169.254.0.0/16', guestForwards: [{ address: mmds.ipv4_address, port: 80, command: standIn }] } : {}),
      })),
      cpus: config['machine-config'].vcpu_count,
      memoryMiB: config['machine-config'].mem_size_mib,
      serialFile: serial,
      snapshot: true,
    },
    { signal: abort.signal },
  ).catch((err: unknown) => err);
  let exited = false;
  void qemu.then(() => (exited = true));
  const ready = `kubedos: ready ${identity.hostname}`;
  const seen: Record<string, number> = {};
  const marks: Record<string, RegExp> = {
    kernel: /Linux version/, init: /Run \/init as init process/, rootDisk: /virtio_blk virtio\d+: \[vda\]/, systemd: /systemd\[1\]: /,
    mmds: /kubedos: mmds: read meta-data and user-data/, ready: new RegExp(`^${ready}`, 'm'),
  };
  let log = '';
  try {
    while (Date.now() - started < 300_000 && !exited) {
      log = await fs.readFile(serial, 'utf8').catch(() => '');
      for (const [mark, re] of Object.entries(marks)) if (seen[mark] === undefined && re.test(log)) seen[mark] = Date.now() - started;
      if (seen.ready !== undefined) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    console.log(`microvm boot under TCG (wall ms from QEMU start): ${JSON.stringify(seen)}; command line: ${cmdline}`);
    if (seen.ready === undefined) console.log(log.slice(-6000));
    expect(log).toContain(`Kernel command line: ${cmdline}`);
    expect(log).not.toContain('virtio_mmio.device=');
    expect(log).toMatch(marks.rootDisk!);
    expect(log).not.toContain('Gave up waiting for root');
    expect(log).toMatch(marks.mmds!);
    expect(log).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
    // The one host key is the Foundry's, so the node is pinned from its first boot.
    expect(log.match(/kubedos: hostkey .*/g)).toEqual([expect.stringContaining(` ${identity.hostKeyFingerprint} `)]);
    expect(log).toMatch(marks.ready!);
  } finally {
    abort.abort();
    await qemu;
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a second production from the same layer and disk is bit-identical', async () => {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-fc-again-'));
  await expectReproduced(img, ['firecracker'], out, async (again) => {
    expect(again.map((a) => a.file)).toEqual([files.config, files.kernel, files.initrd, files.rootfs]);
    const config = await fs.readFile(path.join(out, files.config));
    expect(createHash('sha256').update(config).digest('hex')).toBe(again[0]!.sha256);
  });
});
