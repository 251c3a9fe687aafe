/**
 * The media formats' pure parts (iso, installer-media, pxe): tool argv pinned, the cpio writer
 * read back, the boot menus and kernel command lines, xorriso report parsing, the installer
 * entry of Debian's grub.cfg, the preseed and payload script, plan and spec validation.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { inputDigest, validatePlan, type BuildPlan } from '../../src/foundry';
import { formatNamed } from '../../src/foundry/formats';
import { newcArchive, parentDirs, writeNewcArchive } from '../../src/foundry/cpio';
import { grubConfig, grubEarlyConfig, isoBootEntries, isolinuxConfig, isoVolumeId } from '../../src/foundry/formats/iso';
import {
  describeMedia, installerEntryOf, installerGrubConfig, installerIsolinuxConfig, parseElTorito, parseFindOutput, payloadForInstaller, preseedConfig,
} from '../../src/foundry/installer-media';
import { liveBootScript, liveKernelArgs, moduleClosure, parseModulesDep, resolveInTree } from '../../src/foundry/live';
import { grubMkimageArgv } from '../../src/foundry/tools/grub-mkimage';
import { mformatArgv } from '../../src/foundry/tools/mformat';
import { mksquashfs, mksquashfsArgv, unsquashfsExtractArgv, unsquashfsListArgv } from '../../src/foundry/tools/mksquashfs';
import { qemuMachineArgv } from '../../src/foundry/tools/qemu-system';
import { xorrisoExtractArgv, xorrisoFindFilesArgv, xorrisoHybridArgv, xorrisoRepackArgv, xorrisoReportArgv } from '../../src/foundry/tools/xorriso';
import { BuildFailedError } from '../../src/errors';
import { parseSpec } from '../../src/platform';
import { SpecError } from '../../src/errors';

const PLAN: BuildPlan = {
  base: { suite: 'bookworm', mirror: 'http://deb.debian.org/debian', components: ['main'], packages: ['openssh-server', 'linux-image-amd64'], architecture: 'amd64' },
  sourceDateEpoch: 1700000000,
  image: {
    name: 'img',
    role: 'worker',
    hostname: 'worker-0',
    files: [{ path: '/etc/app/it\'s.conf', content: 'x\n', mode: 0o640, owner: 'app:app' }],
    units: [],
    firstBoot: [],
    authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d k'],
    passwordLogin: false,
    diskSizeBytes: 2 ** 31,
  },
  formats: ['iso'],
};
const DIGEST = 'ab'.repeat(32);

test('mksquashfs pseudo definitions: a source file\'s own mode (0644 or 0444) no longer shows in the image', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-pseudo-'));
  try {
    const image = async (mode: number, pseudo?: string[]) => {
      const src = path.join(dir, `src-${mode.toString(8)}`);
      await fs.mkdir(src, { recursive: true });
      await fs.writeFile(path.join(src, 'disk.raw'), Buffer.alloc(65536, 7));
      await fs.chmod(path.join(src, 'disk.raw'), mode);
      const out = path.join(dir, `${mode.toString(8)}-${pseudo ? 'p' : 'plain'}.sfs`);
      await mksquashfs({ sources: [src], dest: out, epoch: 1700000000, allTime: true, pseudo });
      return fs.readFile(out);
    };
    expect((await image(0o644)).equals(await image(0o444))).toBe(false);
    const fixed = ['disk.raw m 444 0 0'];
    expect((await image(0o644, fixed)).equals(await image(0o444, fixed))).toBe(true);
    expect(mksquashfsArgv({ sources: ['/d'], dest: '/d.sfs', epoch: 1, pseudo: fixed })).toEqual(expect.arrayContaining(['-p', 'disk.raw m 444 0 0']));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

describe('tool argv', () => {
  test('mksquashfs: zstd level 6, no xattrs, fixed times, new image', () => {
    expect(mksquashfsArgv({ sources: ['/t'], dest: '/r.sfs', epoch: 1700000000 })).toEqual([
      'mksquashfs', '/t', '/r.sfs', '-noappend', '-comp', 'zstd', '-Xcompression-level', '6', '-no-xattrs', '-mkfs-time', '1700000000', '-quiet', '-no-progress',
    ]);
    expect(mksquashfsArgv({ sources: ['/d'], dest: '/d.sfs', epoch: 1, allTime: true, zstdLevel: 3 })).toContain('-all-time');
    expect(unsquashfsListArgv('/r.sfs')).toEqual(['unsquashfs', '-lln', '/r.sfs']);
    expect(unsquashfsExtractArgv('/r.sfs', '/o', ['/etc/hostname'])).toEqual(['unsquashfs', '-no-progress', '-d', '/o', '/r.sfs', '/etc/hostname']);
  });
  test('xorriso: hybrid (isolinux + EFI image, isohybrid MBR and GPT), repack with replay, extract, find, report', () => {
    expect(
      xorrisoHybridArgv({ out: '/o.iso', volid: 'V', sourceDir: '/t', isolinuxBin: 'isolinux/isolinux.bin', bootCatalog: 'isolinux/boot.cat', isohybridMbr: '/mbr', efiImage: 'boot/grub/efi.img' }),
    ).toEqual([
      'xorriso', '-no_rc', '-as', 'mkisofs', '-o', '/o.iso', '-V', 'V', '-iso-level', '3', '-r',
      '-b', 'isolinux/isolinux.bin', '-c', 'isolinux/boot.cat', '-no-emul-boot', '-boot-load-size', '4', '-boot-info-table',
      '-isohybrid-mbr', '/mbr', '-eltorito-alt-boot', '-e', 'boot/grub/efi.img', '-no-emul-boot', '-isohybrid-gpt-basdat', '/t',
    ]);
    expect(xorrisoRepackArgv('/in.iso', '/out.iso', [{ host: '/h', iso: '/i' }])).toEqual([
      'xorriso', '-no_rc', '-indev', '/in.iso', '-outdev', '/out.iso', '-boot_image', 'any', 'replay', '-map', '/h', '/i',
    ]);
    expect(xorrisoExtractArgv('/in.iso', [{ iso: '/a', host: '/b' }])).toEqual(['xorriso', '-no_rc', '-osirrox', 'on', '-indev', '/in.iso', '-extract', '/a', '/b']);
    expect(xorrisoFindFilesArgv('/in.iso')).toEqual(['xorriso', '-no_rc', '-indev', '/in.iso', '-find', '/', '-type', 'f']);
    expect(xorrisoReportArgv('/in.iso')).toEqual(['xorriso', '-no_rc', '-indev', '/in.iso', '-report_el_torito', 'plain', '-pvd_info']);
  });
  test('grub-mkimage, mformat', () => {
    expect(grubMkimageArgv({ format: 'x86_64-efi', out: '/b.efi', earlyConfig: '/e.cfg', prefix: '/boot/grub', modules: ['fat', 'iso9660'] })).toEqual([
      'grub-mkimage', '-O', 'x86_64-efi', '-o', '/b.efi', '-c', '/e.cfg', '-p', '/boot/grub', 'fat', 'iso9660',
    ]);
    expect(mformatArgv({ image: '/e.img', sizeKiB: 2880, serial: '0123abcd', label: 'EFI' })).toEqual(['mformat', '-i', '/e.img', '-C', '-f', '2880', '-N', '0123abcd', '-v', 'EFI', '::']);
  });
  test('qemu: CD-ROM first under SeaBIOS, virtio disks, serial log and typing socket', () => {
    expect(qemuMachineArgv({ firmware: 'bios', cdrom: '/c.iso', disks: [{ file: '/d.raw', format: 'raw' }], boot: 'cdrom', serialLog: '/s.log', serialSocket: '/s.sock' })).toEqual([
      'qemu-system-x86_64', '-accel', 'tcg,thread=multi', '-cpu', 'max', '-machine', 'q35', '-smp', '2', '-m', '1024',
      '-display', 'none', '-monitor', 'none', '-no-reboot', '-nodefaults',
      '-drive', 'if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=/c.iso', '-device', 'ide-cd,drive=cd0,bus=ide.0,bootindex=1',
      '-drive', 'if=none,id=hd0,format=raw,file=/d.raw,discard=unmap,detect-zeroes=unmap', '-device', 'virtio-blk-pci,drive=hd0,bootindex=11',
      '-chardev', 'socket,id=ser0,path=/s.sock,server=on,wait=off,logfile=/s.log', '-serial', 'chardev:ser0',
    ]);
  });
  test('qemu: network boot under OVMF with the TFTP root and boot file', () => {
    const argv = qemuMachineArgv({ firmware: { ovmfCode: '/c.fd', ovmfVars: '/v.fd' }, net: { tftpDir: '/t', bootfile: 'b.ipxe' }, boot: 'network', serialLog: '/s.log' });
    expect(argv).toEqual(expect.arrayContaining(['-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=/c.fd', '-netdev', 'user,id=net0,tftp=/t,bootfile=b.ipxe']));
    expect(argv).toContain('virtio-net-pci,netdev=net0,bootindex=1');
    expect(argv.slice(-4)).toEqual(['-chardev', 'file,id=ser0,path=/s.log', '-serial', 'chardev:ser0']);
  });
});

describe('cpio (newc)', () => {
  /** Parse an archive back: [name, mode (octal), data]. */
  function parse(buf: Buffer): [string, string, string][] {
    const out: [string, string, string][] = [];
    let pos = 0;
    for (;;) {
      expect(buf.toString('latin1', pos, pos + 6)).toBe('070701');
      const field = (i: number) => parseInt(buf.toString('latin1', pos + 6 + i * 8, pos + 14 + i * 8), 16);
      const nameSize = field(11);
      const name = buf.toString('latin1', pos + 110, pos + 110 + nameSize - 1);
      const data = Math.ceil((pos + 110 + nameSize) / 4) * 4;
      if (name === 'TRAILER!!!') return out;
      expect(field(5)).toBe(name === 'TRAILER!!!' ? 0 : 1700000000);
      out.push([name, field(1).toString(8), buf.toString('latin1', data, data + field(6))]);
      pos = Math.ceil((data + field(6)) / 4) * 4;
    }
  }
  test('entries in order, fixed mtime, 4-byte alignment, trailer; the streaming writer writes the same bytes', async () => {
    const entries = [
      ...parentDirs(['a/b/c.txt', 'a/d']),
      { kind: 'file' as const, name: 'a/b/c.txt', mode: 0o644, content: Buffer.from('hello') },
      { kind: 'symlink' as const, name: 'a/d', target: 'b/c.txt' },
    ];
    const buf = newcArchive(entries, 1700000000);
    expect(buf.length % 4).toBe(0);
    expect(parse(buf)).toEqual([
      ['a', '40755', ''],
      ['a/b', '40755', ''],
      ['a/b/c.txt', '100644', 'hello'],
      ['a/d', '120777', 'b/c.txt'],
    ]);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-cpio-'));
    try {
      await fs.writeFile(path.join(dir, 'c'), 'hello');
      const streamed = [...entries.slice(0, 2), { kind: 'file' as const, name: 'a/b/c.txt', mode: 0o644, content: { hostFile: path.join(dir, 'c') } }, entries[3]!];
      await writeNewcArchive(path.join(dir, 'x.cpio'), streamed, 1700000000);
      expect(await fs.readFile(path.join(dir, 'x.cpio'))).toEqual(buf);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
  test('rejects absolute and escaping names', () => {
    expect(() => newcArchive([{ kind: 'dir', name: '/etc', mode: 0o755 }], 1)).toThrow(/bad entry name/);
    expect(() => newcArchive([{ kind: 'dir', name: 'a/../b', mode: 0o755 }], 1)).toThrow(/bad entry name/);
  });
});

describe('live system', () => {
  test('kernel arguments: the boot script, the medium, the root, install mode, serial console last', () => {
    expect(liveKernelArgs({ mediaLabel: 'KUBEDOS_AB', root: '/live/root.squashfs' })).toBe(
      'boot=kubedos kubedos.media=KUBEDOS_AB kubedos.root=/live/root.squashfs no_timer_check console=tty0 console=ttyS0,115200n8',
    );
    expect(liveKernelArgs({ mediaLabel: 'L', root: '/r', install: 'auto' })).toBe(
      'boot=kubedos kubedos.media=L kubedos.root=/r kubedos.install=auto kubedos.disk=/install/disk.squashfs no_timer_check console=tty0 console=ttyS0,115200n8',
    );
    expect(liveKernelArgs({ root: '/kubedos/root.squashfs' })).not.toContain('kubedos.media');
  });
  test('the boot script defines mountroot for initramfs-tools and loads the bundled modules in order', () => {
    const script = liveBootScript([{ name: 'cdrom', file: '/usr/lib/kubedos/modules/cdrom.ko' }, { name: 'isofs', file: '/usr/lib/kubedos/modules/isofs.ko' }]);
    expect(script).toMatch(/^mountroot\(\) \{\n\tkd_load cdrom \/usr\/lib\/kubedos\/modules\/cdrom\.ko\n\tkd_load isofs /m);
    for (const fn of ['mount_top', 'mount_premount', 'mount_bottom']) expect(script).toContain(`${fn}() { :; }`);
    expect(script).toContain('mount -t overlay -o lowerdir=/run/kubedos/root,upperdir=/run/kubedos/rw/upper,workdir=/run/kubedos/rw/work overlay "${rootmnt}"');
    expect(script).not.toContain('undefined');
  });
  test('module closure from modules.dep: dependencies first, names normalised, missing modules named', () => {
    const dep = parseModulesDep(
      'kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko\nkernel/drivers/cdrom/cdrom.ko:\nkernel/drivers/scsi/sr_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/cdrom/cdrom.ko\nkernel/drivers/scsi/scsi_mod.ko:\nkernel/fs/squashfs/squashfs.ko.xz:\n',
    );
    expect(moduleClosure(dep, ['isofs', 'sr_mod', 'squashfs']).map((m) => m.name)).toEqual(['cdrom', 'isofs', 'scsi_mod', 'sr_mod', 'squashfs']);
    expect(moduleClosure(dep, ['squashfs'])[0]!.file).toBe('kernel/fs/squashfs/squashfs.ko.xz');
    expect(() => moduleClosure(dep, ['overlay'])).toThrow(BuildFailedError);
  });
  test('paths resolve through the tree\'s own symlinks, absolute ones included, never outside it', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-tree-'));
    try {
      await fs.mkdir(path.join(root, 'usr/lib/x'), { recursive: true });
      await fs.symlink('usr/lib', path.join(root, 'lib'));
      await fs.symlink('/usr/lib', path.join(root, 'abs'));
      expect(await resolveInTree(root, '/lib/x/f')).toBe(path.join(root, 'usr/lib/x/f'));
      expect(await resolveInTree(root, '/abs/x/f')).toBe(path.join(root, 'usr/lib/x/f'));
      expect(await resolveInTree(root, '/missing/f')).toBeUndefined();
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('iso', () => {
  const entries = isoBootEntries({ name: 'img' }, isoVolumeId(DIGEST));
  test('volume id from the input digest; two entries, live first', () => {
    expect(isoVolumeId(DIGEST)).toBe('KUBEDOS_ABABABAB');
    expect(entries.map((e) => e.id)).toEqual(['live', 'install']);
    expect(entries[1]!.args).toContain('kubedos.install=auto');
    expect(entries[0]!.args).not.toContain('kubedos.install');
  });
  test('isolinux: serial console, prompt with timeout, live by default', () => {
    const cfg = isolinuxConfig(entries);
    expect(cfg.split('\n').slice(0, 4)).toEqual(['serial 0 115200', 'prompt 1', 'timeout 50', 'default live']);
    expect(cfg).toContain(`label install\n  kernel /live/vmlinuz\n  append initrd=/live/initrd.img ${entries[1]!.args}\n`);
  });
  test('GRUB: live by default after 5 s, hotkeys, the medium found by its marker', () => {
    const cfg = grubConfig(entries);
    expect(cfg.split('\n').slice(0, 2)).toEqual(['set timeout=5', 'set default=live']);
    expect(cfg).toContain(`--id install --hotkey=i {\n\tlinux /live/vmlinuz ${entries[1]!.args}\n\tinitrd /live/initrd.img\n}`);
    expect(grubEarlyConfig('/.disk/kubedos-x')).toBe('search --no-floppy --set=root --file /.disk/kubedos-x\nset prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n');
  });
});

describe('installer media', () => {
  const NETINST_GRUB = `insmod play
menuentry --hotkey=g 'Graphical install' {
    set background_color=black
    linux    /install.amd/vmlinuz vga=788 --- quiet
    initrd   /install.amd/gtk/initrd.gz
}
menuentry --hotkey=i 'Install' {
    set background_color=black
    linux    /install.amd/vmlinuz vga=788 --- quiet
    initrd   /install.amd/initrd.gz
}
`;
  test('the text installer entry of a netinst grub.cfg (not the graphical one)', () => {
    expect(installerEntryOf(NETINST_GRUB)).toEqual({ kernel: '/install.amd/vmlinuz', initrd: '/install.amd/initrd.gz' });
    expect(installerEntryOf('menuentry x {\n}\n')).toBeUndefined();
  });
  test('xorriso reports: El Torito images and file lists', () => {
    const report = [
      'El Torito catalog  : 33  1',
      'El Torito images   :   N  Pltf  B   Emul  Ld_seg  Hdpt  Ldsiz         LBA',
      'El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4        1474',
      'El Torito boot img :   2  UEFI  y   none  0x0000  0x00   5760          34',
      'El Torito img path :   1  /isolinux/isolinux.bin',
      'El Torito img path :   2  /boot/grub/efi.img',
    ].join('\n');
    expect(parseElTorito(report)).toEqual([
      { index: 1, platform: 'BIOS', path: '/isolinux/isolinux.bin' },
      { index: 2, platform: 'UEFI', path: '/boot/grub/efi.img' },
    ]);
    expect(parseFindOutput("'/a b'\n'/it'\"'\"'s'\nxorriso : NOTE : x\n")).toEqual(['/a b', "/it's"]);
  });
  test('media without both boot paths, or without a text install entry, are refused with every reason', () => {
    let err: unknown;
    try {
      describeMedia([{ index: 1, platform: 'BIOS', path: '/boot/grub/i386-pc/eltorito.img' }], [], 'menuentry x {\n}\n');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuildFailedError);
    expect((err as Error).message).toMatch(/no isolinux BIOS El Torito image.*no UEFI El Torito image.*no text-mode install entry/);
    const files = ['/isolinux/isolinux.cfg', '/install.amd/vmlinuz', '/install.amd/initrd.gz'];
    expect(describeMedia([{ index: 1, platform: 'BIOS', path: '/isolinux/isolinux.bin' }, { index: 2, platform: 'UEFI' }], files, NETINST_GRUB)).toEqual({
      isolinuxBin: '/isolinux/isolinux.bin', isolinuxCfg: '/isolinux/isolinux.cfg', kernel: '/install.amd/vmlinuz', initrd: '/install.amd/initrd.gz',
    });
  });
  test('preseed: hostname, mirror and security archive from the plan, root locked, first disk, packages, payload, power off', () => {
    const p = preseedConfig({ ...PLAN, base: { ...PLAN.base, mirror: 'https://mirror.example:8443/debian/', components: ['main', 'non-free-firmware'] } }, DIGEST);
    for (const line of [
      "d-i preseed/early_command string echo 'kubedos: preseed of image img (input abababababababab) loaded' > /dev/console",
      'd-i netcfg/get_hostname string worker-0',
      'd-i mirror/protocol string https',
      'd-i mirror/https/hostname string mirror.example:8443',
      'd-i mirror/https/directory string /debian',
      'd-i apt-setup/security_path string /debian-security',
      'd-i apt-setup/non-free-firmware boolean true',
      'd-i passwd/root-password-crypted password !',
      'd-i partman/early_command string debconf-set partman-auto/disk "$(list-devices disk | head -n1)"',
      'd-i pkgsel/include string linux-image-amd64 openssh-server',
      'd-i preseed/late_command string sh /kubedos/apply-payload.sh',
      'd-i debian-installer/exit/poweroff boolean true',
    ]) expect(p.split('\n')).toContain(line);
  });
  test('payload script: every entry but fstab, quoted, owners set by name inside the installed system', () => {
    const { script, files } = payloadForInstaller(PLAN, DIGEST, '00000000-0000-0000-0000-000000000000');
    expect(script).not.toContain('/etc/fstab');
    expect(script).toMatch(/^f \d+ '\/etc\/app\/it'\\''s\.conf' 0640$/m);
    expect(script).toContain("o '/etc/app/it'\\''s.conf' 'app:app'");
    expect(script).toMatch(/^d '\/root\/\.ssh' 0700$/m);
    expect(files.every((f) => f.name.startsWith('kubedos/payload/'))).toBe(true);
    expect(files.length).toBe(script.split('\n').filter((l) => l.startsWith('f ')).length);
  });
  test('menus: the unattended entry added and made the default, the originals kept', () => {
    const grub = installerGrubConfig(NETINST_GRUB, PLAN, '/install.amd/vmlinuz');
    expect(grub).toContain(NETINST_GRUB.trimEnd());
    expect(grub.indexOf('--id kubedos')).toBeLessThan(grub.indexOf('Graphical install'));
    expect(grub.trimEnd().endsWith('set default=kubedos\nset timeout=5')).toBe(true);
    const isolinux = installerIsolinuxConfig(PLAN, '/install.amd/vmlinuz', '/isolinux');
    expect(isolinux).toContain('label debian\n  config /isolinux/isolinux-debian.cfg /isolinux/\n');
    expect(isolinux).toContain('  append initrd=/kubedos/initrd.gz auto=true priority=critical --- no_timer_check console=tty0 console=ttyS0,115200n8\n');
  });
});

describe('validation', () => {
  test('plan: installer-media needs an installer ISO by absolute path, URL or debian-mini, with a sha256', () => {
    expect(validatePlan({ ...PLAN, formats: ['installer-media'] })).toContain(
      'installer-media needs image.installerIso: the Debian installer ISO to repack (absolute path or http(s) URL) and its sha256',
    );
    const problems = validatePlan({ ...PLAN, image: { ...PLAN.image, installerIso: { source: 'mini.iso', sha256: 'ABC' } }, formats: ['installer-media'] });
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(/must be an absolute path, an http\(s\) URL or "debian-mini"/), 'image.installerIso.sha256 must be 64 lowercase hex digits']));
    for (const source of ['https://x/m.iso', '/srv/m.iso', 'debian-mini']) {
      expect(validatePlan({ ...PLAN, image: { ...PLAN.image, installerIso: { source, sha256: 'a'.repeat(64) } }, formats: ['installer-media'] })).toEqual([]);
    }
  });
  test('plan: the installer ISO is an option of installer-media, by its sha256, not by where it lives; the image digest ignores it', () => {
    const withIso = (source: string, sha256: string): BuildPlan => ({ ...PLAN, image: { ...PLAN.image, installerIso: { source, sha256 } } });
    const media = formatNamed('installer-media');
    const a = media.options!(withIso('/srv/a/mini.iso', 'a'.repeat(64)));
    expect(media.options!(withIso('https://x/mini.iso', 'a'.repeat(64)))).toEqual(a);
    expect(media.options!(withIso('/srv/a/mini.iso', 'c'.repeat(64)))).not.toEqual(a);
    // The image (rootfs, disks) does not depend on the installer ISO: its siblings are reused when only the ISO changes.
    expect(inputDigest(withIso('/srv/a/mini.iso', 'c'.repeat(64)), 'lock')).toBe(inputDigest(withIso('/srv/a/mini.iso', 'a'.repeat(64)), 'lock'));
    expect(inputDigest(withIso('/srv/a/mini.iso', 'a'.repeat(64)), 'lock')).toBe(inputDigest(PLAN, 'lock'));
  });
  test('spec: installerIso is checked, and required by the installer-media output', () => {
    const issues = (yaml: string) => {
      try {
        parseSpec(yaml, 'kubedos.yaml', { checkSources: false });
        return [];
      } catch (e) {
        if (e instanceof SpecError) return e.issues.map((i) => `${i.path}: ${i.message}`);
        throw e;
      }
    };
    expect(issues('apiVersion: kubedos.dev/v1alpha1\nkind: Platform\nmetadata: {name: t}\nimages:\n  w:\n    outputs: [installer-media]\n')).toEqual([
      'images.w.installerIso: the installer-media output needs installerIso: the Debian installer ISO to repack (source: path or URL, sha256)',
    ]);
    expect(issues('apiVersion: kubedos.dev/v1alpha1\nkind: Platform\nmetadata: {name: t}\nimages:\n  w:\n    outputs: [installer-media]\n    installerIso: {source: "file:///mini.iso", sha256: abc}\n')).toEqual([
      'images.w.installerIso.source: installer ISO "file:///mini.iso": only http(s) URLs are fetched; use a path for a local file',
      'images.w.installerIso.sha256: "abc" is not a sha256: write its 64 lowercase hex digits (sha256sum prints them)',
    ]);
    expect(issues(`apiVersion: kubedos.dev/v1alpha1\nkind: Platform\nmetadata: {name: t}\nimages:\n  w:\n    outputs: [installer-media]\n    installerIso: {source: /srv/mini.iso, sha256: ${'a'.repeat(64)}}\n`)).toEqual([]);
  });
});
