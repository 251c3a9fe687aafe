/**
 * The pieces behind the firecracker, ami, azure and gce formats, on small synthetic inputs:
 * bzImage payload location, initramfs listing, the old-GNU sparse tar (read back by GNU tar),
 * the VHD footer normalisation, the Firecracker config and command line, argv of the new tools.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { validatePlan, type BuildPlan } from '../../src/foundry';
import { normaliseVhdFooter, parseVhdFooter } from '../../src/foundry/formats/azure';
import { FIRECRACKER_BOOT_ARGS, firecrackerConfig, firecrackerFiles, firecrackerKernelCmdline } from '../../src/foundry/formats/firecracker';
import { moduleName, parseNewc } from '../../src/foundry/initrd';
import { locateKernelPayload } from '../../src/foundry/kernel';
import { oldGnuSparseHeaders, sparseRegions, tarNumber, writeSparseTar } from '../../src/foundry/sparse-tar';
import { gzipArgv } from '../../src/foundry/tools/gzip';
import { qemuImgConvert } from '../../src/foundry/tools/qemu-img';
import { qemuMicrovmBootArgv } from '../../src/foundry/tools/qemu-system';
import { xzDecompressArgv } from '../../src/foundry/tools/xz';
import { zstdDecompressArgv } from '../../src/foundry/tools/zstd';

const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-microvm-cloud-'));
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('bzImage payload', () => {
  function bzImage(setupSects: number, payloadOffset: number, payload: Buffer): Buffer {
    const start = (setupSects + 1) * 512 + payloadOffset;
    const b = Buffer.alloc(start + payload.length + 64);
    b[0x1f1] = setupSects;
    b.write('HdrS', 0x202, 'latin1');
    b.writeUInt16LE(0x20f, 0x206);
    b.writeUInt32LE(payloadOffset, 0x248);
    b.writeUInt32LE(payload.length, 0x24c);
    payload.copy(b, start);
    return b;
  }
  test('is located from the boot header and recognised by its magic', () => {
    const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100, 7)]);
    expect(locateKernelPayload(bzImage(39, 716, xz))).toEqual({ offset: 40 * 512 + 716, length: xz.length, compression: 'xz' });
    const zst = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(10, 1)]);
    expect(locateKernelPayload(bzImage(4, 0, zst)).compression).toBe('zstd');
  });
  test('anything else is refused with a reason', () => {
    expect(() => locateKernelPayload(Buffer.alloc(4096))).toThrow(/not an x86 bzImage/);
    expect(() => locateKernelPayload(bzImage(4, 0, Buffer.from('LZ4!......')))).toThrow(/unsupported method/);
  });
});

describe('initramfs listing', () => {
  function newc(names: string[]): Buffer {
    const parts: Buffer[] = [];
    for (const name of [...names, 'TRAILER!!!']) {
      const data = name === 'TRAILER!!!' ? Buffer.alloc(0) : Buffer.from(`content of ${name}`);
      const fields = [1, 0o100644, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
      const head = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}${name}\0`, 'latin1');
      parts.push(head, Buffer.alloc((4 - (head.length % 4)) % 4), data, Buffer.alloc((4 - (data.length % 4)) % 4));
    }
    return Buffer.concat(parts);
  }
  test('concatenated newc archives and zero padding are read; the offset of what follows is given', () => {
    const buf = Buffer.concat([newc(['kernel', 'kernel/x86/microcode/AuthenticAMD.bin']), Buffer.alloc(512), newc(['usr/lib/modules/6.1/kernel/fs/ext4/ext4.ko']), Buffer.from([0x28, 0xb5, 0x2f, 0xfd])]);
    const { names, end } = parseNewc(buf);
    expect(names).toEqual(['kernel', 'kernel/x86/microcode/AuthenticAMD.bin', 'usr/lib/modules/6.1/kernel/fs/ext4/ext4.ko']);
    expect(end).toBe(buf.length - 4);
  });
  test('module names as the kernel knows them', () => {
    expect(moduleName('usr/lib/modules/6.1.0-56-amd64/kernel/drivers/block/xen-blkfront.ko')).toBe('xen_blkfront');
    expect(moduleName('kernel/drivers/nvme/host/nvme.ko.zst')).toBe('nvme');
    expect(moduleName('usr/lib/modules/6.1.0-56-amd64/modules.dep')).toBeUndefined();
  });
});

describe('old-GNU sparse tar', () => {
  test('numbers: octal while they fit, base-256 beyond (disks over 8 GiB)', () => {
    expect(tarNumber(0o644, 8).toString('latin1')).toBe('0000644\0');
    expect(tarNumber(8 ** 11 - 1, 12).toString('latin1')).toBe('77777777777\0');
    const big = tarNumber(16 * 2 ** 30, 12);
    expect(big[0]).toBe(0x80);
    expect(big.readBigUInt64BE(4)).toBe(16n * 2n ** 30n);
  });
  test('header: type S, oldgnu magic, 4 regions inline, 21 per extension block, the map ends at the file size', () => {
    const regions: [number, number][] = Array.from({ length: 30 }, (_, i) => [i * 8192, 4096]);
    const blocks = oldGnuSparseHeaders('disk.raw', 1 << 20, regions, 1700000000);
    expect(blocks).toHaveLength(3); // 31 entries: 4 + 21 + 6
    const h = blocks[0]!;
    expect(h.toString('latin1', 156, 157)).toBe('S');
    expect(h.toString('latin1', 257, 265)).toBe('ustar  \0');
    expect(h[482]).toBe(1);
    expect(parseInt(h.toString('latin1', 483, 494), 8)).toBe(1 << 20);
    expect(parseInt(h.toString('latin1', 124, 135), 8)).toBe(30 * 4096);
    expect(blocks[1]![504]).toBe(1);
    expect(blocks[2]![504]).toBe(0);
    expect(parseInt(blocks[2]!.toString('latin1', 5 * 24, 5 * 24 + 11), 8)).toBe(1 << 20); // the closing (size, 0) entry
  });

  test('GNU tar lists exactly the one member and extracts it bit-identical and sparse; the map follows content, not holes', async () => {
    // 64 data blocks separated by holes and by explicit zero blocks (written, not holes), ending in a hole.
    const file = path.join(dir, 'disk.raw');
    const size = 8 * 2 ** 20;
    const fh = await fs.open(file, 'w');
    await fh.truncate(size);
    for (let i = 0; i < 64; i++) await fh.write(Buffer.alloc(4096, i + 1), 0, 4096, i * 3 * 4096);
    await fh.write(Buffer.alloc(4096), 0, 4096, 200 * 4096);
    await fh.close();
    // The same content with every zero block written out: the map (and the tar) must not change.
    const dense = path.join(dir, 'dense', 'disk.raw');
    await fs.mkdir(path.dirname(dense));
    writeFileSync(dense, readFileSync(file));
    const a = await sparseRegions(file);
    const b = await sparseRegions(dense);
    expect(a).toEqual(b);
    expect(a.regions).toHaveLength(64);

    const tarA = path.join(dir, 'a.tar');
    const tarB = path.join(dir, 'b.tar');
    await writeSparseTar(tarA, 'disk.raw', file, 1700000000);
    await writeSparseTar(tarB, 'disk.raw', dense, 1700000000);
    expect(sha256(readFileSync(tarA))).toBe(sha256(readFileSync(tarB)));
    expect(readFileSync(tarA).length % 10240).toBe(0);

    const list = spawnSync('tar', ['--list', '--verbose', '--numeric-owner', '--full-time', '-f', tarA], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    expect(list.status).toBe(0);
    const lines = list.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^-rw-r--r-- 0\/0 +8388608 2023-11-14 22:13:20 disk\.raw$/);
    const out = path.join(dir, 'out');
    await fs.mkdir(out);
    const x = spawnSync('tar', ['--extract', '--sparse', '-f', tarA, '-C', out]);
    expect(x.status).toBe(0);
    expect(sha256(readFileSync(path.join(out, 'disk.raw')))).toBe(sha256(readFileSync(file)));
    expect((await fs.stat(path.join(out, 'disk.raw'))).blocks * 512).toBeLessThan(size / 2);
  });
});

describe('VHD footer', () => {
  test('two conversions differ only in time and id; normalised they are identical, checksum valid, size exact', async () => {
    const raw = path.join(dir, 'vhd.raw');
    const data = Buffer.alloc(3 * 2 ** 20);
    data.write('kubedos', 12345);
    writeFileSync(raw, data);
    const make = async (name: string) => {
      const out = path.join(dir, name);
      await qemuImgConvert({ source: raw, sourceFormat: 'raw', dest: out, destFormat: 'vpc', options: { subformat: 'fixed', force_size: 'on' } });
      return out;
    };
    const first = await make('a.vhd');
    await new Promise((r) => setTimeout(r, 1100));
    const second = await make('b.vhd');
    expect(sha256(readFileSync(first))).not.toBe(sha256(readFileSync(second)));
    const uuid = '0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3';
    const fa = await normaliseVhdFooter(first, 1700000000, uuid);
    await normaliseVhdFooter(second, 1700000000, uuid);
    expect(sha256(readFileSync(first))).toBe(sha256(readFileSync(second)));
    expect(fa).toEqual({
      cookie: 'conectix', diskType: 2, currentSize: data.length, originalSize: data.length,
      timestamp: 1700000000 - 946684800, uniqueId: uuid.replace(/-/g, ''), checksumOk: true,
    });
    const bytes = readFileSync(first);
    expect(bytes.length).toBe(data.length + 512);
    expect(parseVhdFooter(bytes.subarray(bytes.length - 512)).checksumOk).toBe(true);
    bytes[bytes.length - 512 + 30] ^= 1;
    expect(parseVhdFooter(bytes.subarray(bytes.length - 512)).checksumOk).toBe(false);
    const info = spawnSync('qemu-img', ['info', '-f', 'vpc', '--output=json', first], { encoding: 'utf8' });
    expect(JSON.parse(info.stdout)['virtual-size']).toBe(data.length);
  });
});

describe('Firecracker config', () => {
  const image = { name: 'img' };
  test('names the bundle files, one writable root drive, eth0 with MMDS V2', () => {
    const c = firecrackerConfig(image, 'ab'.repeat(32));
    const files = firecrackerFiles(image);
    expect(c['boot-source']).toEqual({ kernel_image_path: files.kernel, initrd_path: files.initrd, boot_args: FIRECRACKER_BOOT_ARGS });
    expect(c.drives).toEqual([{ drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true, is_read_only: false }]);
    expect(c['mmds-config']).toEqual({ version: 'V2', network_interfaces: ['eth0'], ipv4_address: '169.254.169.254' });
    expect(c['network-interfaces'].map((n) => n.iface_id)).toEqual(['eth0']);
    expect(c['network-interfaces'][0]!.guest_mac).toMatch(/^06(:[0-9a-f]{2}){5}$/);
    expect(firecrackerConfig(image, 'ab'.repeat(32))).toEqual(c);
    expect(firecrackerConfig(image, 'cd'.repeat(32))['network-interfaces'][0]!.guest_mac).not.toBe(c['network-interfaces'][0]!.guest_mac);
  });
  test("the guest's command line is boot_args plus what Firecracker appends for the root drive", () => {
    const c = firecrackerConfig(image, 'ab'.repeat(32));
    expect(firecrackerKernelCmdline(c)).toBe(`${FIRECRACKER_BOOT_ARGS} root=/dev/vda rw`);
    expect(firecrackerKernelCmdline({ ...c, drives: [{ ...c.drives[0]!, is_read_only: true }] })).toBe(`${FIRECRACKER_BOOT_ARGS} root=/dev/vda ro`);
    expect(FIRECRACKER_BOOT_ARGS).toContain('console=ttyS0');
    expect(FIRECRACKER_BOOT_ARGS).not.toMatch(/nomodule|virtio_mmio\.device/);
  });
});

test('gce: plans whose disk is not a whole number of GiB are refused up front', () => {
  const plan: BuildPlan = {
    base: { suite: 'bookworm', mirror: 'http://deb.debian.org/debian', components: ['main'], packages: ['linux-image-amd64'], architecture: 'amd64' },
    sourceDateEpoch: 1700000000,
    image: { name: 'img', role: 'worker', hostname: 'h', files: [], units: [], firstBoot: [], authorizedKeys: [], passwordLogin: false, diskSizeBytes: 1536 * 2 ** 20 },
    formats: ['raw', 'gce'],
  };
  expect(validatePlan(plan)).toEqual(['image.diskSizeBytes must be a whole number of GiB for gce (Compute Engine requires it of disk.raw)']);
  expect(validatePlan({ ...plan, formats: ['raw', 'azure'] })).toEqual([]);
  expect(validatePlan({ ...plan, image: { ...plan.image, diskSizeBytes: 2 * 2 ** 30 } })).toEqual([]);
});

describe('argv of the new tool modules', () => {
  test('xz: first stream only, in place', () => {
    expect(xzDecompressArgv('/w/vmlinux.xz')).toEqual(['xz', '--decompress', '--single-stream', '--force', '--quiet', '--', '/w/vmlinux.xz']);
  });
  test('zstd: to a named output', () => {
    expect(zstdDecompressArgv('/w/i.zst', '/w/i.cpio')).toEqual(['zstd', '--decompress', '--quiet', '--force', '-o', '/w/i.cpio', '--', '/w/i.zst']);
  });
  test('gzip (pigz): no name, no time stamp, on every core', () => {
    expect(gzipArgv('/w/disk.tar', 6, 2)).toEqual(['pigz', '--no-name', '-6', '--processes', '2', '--force', '--quiet', '--', '/w/disk.tar']);
  });
  test('gzip (pigz): the same bytes whatever the thread count, and gzip reads them', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kubedos-pigz-'));
    try {
      // Several 128 KiB blocks of compressible, varied data.
      const data = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i} ${(i * 7919) % 104729}\n`).join(''));
      const digests = [1, 2, 3].map((threads) => {
        const file = path.join(dir, `t${threads}`);
        writeFileSync(file, data);
        const [tool, ...args] = gzipArgv(file, 6, threads);
        execFileSync(tool!, args);
        return createHash('sha256').update(readFileSync(`${file}.gz`)).digest('hex');
      });
      expect(new Set(digests).size).toBe(1);
      expect(execFileSync('gzip', ['-dc', path.join(dir, 't2.gz')]).equals(data)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('qemu microvm: ACPI, no PCI, no automatic virtio_mmio.device=, direct kernel boot, virtio-mmio disk and NIC', () => {
    expect(
      qemuMicrovmBootArgv({ kernel: '/b/vmlinux', initrd: '/b/initrd', cmdline: 'console=ttyS0 root=/dev/vda rw', drives: ['/b/rootfs.ext4'], nics: [{ id: 'eth0' }, { id: 'eth1', net: '169.254.0.0/16', guestForwards: [{ address: '169.254.169.254', port: 80, command: 'node mmds.cjs a,b.json' }] }], serialFile: '/t/serial.log', cpus: 1, memoryMiB: 512, snapshot: true }),
    ).toEqual([
      'qemu-system-x86_64', '-M', 'microvm,acpi=on,pcie=off,auto-kernel-cmdline=off',
      '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', '1', '-m', '512',
      '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-no-reboot',
      '-chardev', 'file,id=ser0,path=/t/serial.log', '-serial', 'chardev:ser0', '-kernel', '/b/vmlinux', '-initrd', '/b/initrd', '-append', 'console=ttyS0 root=/dev/vda rw',
      '-drive', 'id=drive0,file=/b/rootfs.ext4,format=raw,if=none,snapshot=on', '-device', 'virtio-blk-device,drive=drive0',
      '-netdev', 'user,id=eth0,restrict=on', '-device', 'virtio-net-device,netdev=eth0',
      '-netdev', 'user,id=eth1,restrict=on,net=169.254.0.0/16,guestfwd=tcp:169.254.169.254:80-cmd:node mmds.cjs a,,b.json', '-device', 'virtio-net-device,netdev=eth1',
    ]);
  });
});
