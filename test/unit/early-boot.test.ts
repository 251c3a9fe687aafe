/** The layer's initramfs: every format's early-boot modules, copied by a hook, never force-loaded. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initramfsModules, OUTPUT_FORMATS } from '../../src/foundry/formats';
import { layerInitramfsModules, makeInitramfsHook } from '../../src/foundry/rootfs';
import { BuildFailedError } from '../../src/errors';
import { parseSpec } from '../../src/platform';
import type { SpecError } from '../../src/errors';

test('the layer carries the union of every format\'s early-boot modules and the plan\'s own, sorted', () => {
  const all = initramfsModules();
  for (const format of OUTPUT_FORMATS) for (const m of format.earlyBoot?.modules ?? []) expect(all).toContain(m);
  expect(all).toEqual([...new Set(all)].sort());
  expect(layerInitramfsModules({ initramfsModules: ['qla2xxx'] })).toEqual([...all, 'qla2xxx'].sort());
  // Every disk format, the cloud ones and Firecracker name what reaches their root disk.
  for (const name of ['raw', 'qcow2', 'vmdk', 'ova', 'firecracker', 'ami', 'azure', 'gce']) {
    expect(OUTPUT_FORMATS.find((f) => f.name === name)?.earlyBoot?.modules).toContain(name === 'firecracker' ? 'virtio_mmio' : 'ext4');
  }
  // No NFS-root network stack: no format asks for ethernet drivers beyond the clouds' own.
  expect(all).not.toContain('e1000e');
});

test('the hook copies the modules with initramfs-tools and sets MODULES=list, in the tree it is given', () => {
  const tree = fs.mkdtempSync(path.join(os.tmpdir(), 'kubedos-initramfs-hook-'));
  try {
    // A stand-in chroot: the hook runs `chroot "$1" dpkg-divert …` and `update-initramfs`; record them instead.
    const bin = path.join(tree, 'bin');
    fs.mkdirSync(bin);
    const chroot = [
      '#!/bin/sh',
      'root=$1; shift; echo "$*" >> "$CALLS"',
      // dpkg-divert --rename --remove puts the real update-initramfs back.
      'if [ "$1" = dpkg-divert ]; then printf "#!/bin/sh\\n" > "$root/usr/sbin/update-initramfs"; chmod 755 "$root/usr/sbin/update-initramfs"; fi',
    ];
    fs.writeFileSync(path.join(bin, 'chroot'), `${chroot.join('\n')}\n`, { mode: 0o755 });
    for (const d of ['usr/sbin', 'etc/initramfs-tools/conf.d', 'usr/share/initramfs-tools/hooks']) fs.mkdirSync(path.join(tree, d), { recursive: true });
    fs.writeFileSync(path.join(tree, 'usr/sbin/update-initramfs'), '#!/bin/sh\n', { mode: 0o755 });
    const calls = path.join(tree, 'calls');
    execFileSync('sh', ['-c', makeInitramfsHook(['ext4', 'virtio_blk']), 'hook', tree], { env: { PATH: `${bin}:/usr/bin:/bin`, CALLS: calls } });
    expect(fs.readFileSync(path.join(tree, 'etc/initramfs-tools/conf.d/kubedos.conf'), 'utf8')).toMatch(/^MODULES=list$/m);
    const hook = path.join(tree, 'usr/share/initramfs-tools/hooks/kubedos-modules');
    expect(fs.readFileSync(hook, 'utf8')).toMatch(/^#!\/bin\/sh\n[\s\S]*\nmanual_add_modules ext4 virtio_blk\n$/);
    expect(fs.statSync(hook).mode & 0o777).toBe(0o755);
    expect(fs.readFileSync(calls, 'utf8')).toMatch(/update-initramfs -c -k all\n$/);
    // Nothing is listed for loading at every boot: udev loads what the machine's hardware needs.
    expect(fs.existsSync(path.join(tree, 'etc/initramfs-tools/modules'))).toBe(false);
  } finally {
    fs.rmSync(tree, { recursive: true, force: true });
  }
});

test('a module name that is not one is refused, in the spec and in the hook', () => {
  expect(() => makeInitramfsHook(['ext4', 'x; rm -rf /'])).toThrow(BuildFailedError);
  const spec = 'apiVersion: kubedos.dev/v1alpha1\nkind: Platform\nmetadata: { name: t }\nbase: { initramfsModules: [megaraid_sas, ../evil.ko] }\nimages: { w: {} }\n';
  const issues = (() => {
    try {
      parseSpec(spec, 'kubedos.yaml', { checkSources: false });
    } catch (err) {
      return (err as SpecError).issues;
    }
    return [];
  })();
  expect(issues).toEqual([expect.objectContaining({ path: 'base.initramfsModules[1]', location: 'kubedos.yaml:4:42', message: expect.stringMatching(/invalid kernel module name "\.\.\/evil\.ko"/) })]);
});
