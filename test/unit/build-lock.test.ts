/**
 * Lock serialisation, resolution parsing and derived identifiers: pure functions, no tools.
 * Everything here feeds a cache key or a byte on the disk, so values are pinned.
 */
import { derivedUuid, layerDigest, lockDigest, lockInputsDigest, parseLock, serializeLock, validatePlan, type BasePlan, type Lock } from '../../src/foundry';
import { diskLayout, layerIds, sfdiskScript } from '../../src/foundry/disk';
import type { Paragraph } from '../../src/foundry/deb822';
import { debFileName } from '../../src/foundry/lock';
import { aptConfig, minbaseSelection, parsePrintUris } from '../../src/foundry/resolve';
import { autoInstalled } from '../../src/foundry/rootfs';
import { BuildFailedError } from '../../src/errors';

const BASE: BasePlan = {
  suite: 'bookworm',
  mirror: 'http://deb.debian.org/debian/',
  components: ['main'],
  packages: ['zstd', 'openssh-server', 'zstd'],
  architecture: 'amd64',
};

const LOCK: Lock = {
  lockVersion: 1,
  suite: 'bookworm',
  architecture: 'amd64',
  baseInputs: lockInputsDigest(BASE),
  packages: [
    { name: 'zstd', version: '1.5.4+dfsg2-5', architecture: 'amd64', sha256: 'a'.repeat(64), filename: 'pool/main/libz/libzstd/zstd_1.5.4+dfsg2-5_amd64.deb', origin: 'mirror' },
    { name: 'bsdutils', version: '1:2.38.1-5+deb12u3', architecture: 'amd64', sha256: 'b'.repeat(64), filename: 'pool/main/u/util-linux/bsdutils_2.38.1-5+deb12u3_amd64.deb', origin: 'mirror' },
    { name: 'linux-image-amd64', version: '6.1.192-2', architecture: 'amd64', sha256: 'c'.repeat(64), filename: 'pool/updates/main/l/linux-signed-amd64/linux-image-amd64_6.1.192-2_amd64.deb', origin: 'security' },
  ],
};

describe('lock', () => {
  test('serialise → parse → serialise is the identity; packages sorted by name; keys sorted', () => {
    const text = serializeLock(LOCK);
    expect(serializeLock(parseLock(text))).toBe(text);
    expect(parseLock(text).packages.map((p) => p.name)).toEqual(['bsdutils', 'linux-image-amd64', 'zstd']);
    expect(text.endsWith('}\n')).toBe(true);
    expect(text.indexOf('"architecture"')).toBeLessThan(text.indexOf('"baseInputs"'));
    expect(JSON.parse(text).packages[0]).toEqual({ architecture: 'amd64', filename: LOCK.packages[1]!.filename, name: 'bsdutils', origin: 'mirror', sha256: 'b'.repeat(64), version: '1:2.38.1-5+deb12u3' });
  });

  test('the digest ignores package order and member order', () => {
    const reordered: Lock = { packages: [...LOCK.packages].reverse(), baseInputs: LOCK.baseInputs, architecture: 'amd64', suite: 'bookworm', lockVersion: 1 };
    expect(lockDigest(reordered)).toBe(lockDigest(LOCK));
    expect(lockDigest({ ...LOCK, packages: LOCK.packages.slice(1) })).not.toBe(lockDigest(LOCK));
  });

  test('parse rejects what is not a version-1 lock, with a hint', () => {
    expect(() => parseLock('{')).toThrow(BuildFailedError);
    expect(() => parseLock(JSON.stringify({ ...LOCK, lockVersion: 2 }))).toThrow(/not a kubedos lock/);
    expect(() => parseLock(JSON.stringify({ ...LOCK, packages: [{ ...LOCK.packages[0], sha256: 'xyz' }] }))).toThrow(/not a kubedos lock/);
    expect(() => parseLock(JSON.stringify({ ...LOCK, packages: [{ ...LOCK.packages[0], origin: 'ppa' }] }))).toThrow(/not a kubedos lock/);
  });

  test('lock inputs: package order and duplicates do not matter; the security archive does', () => {
    expect(lockInputsDigest({ ...BASE, packages: ['openssh-server', 'zstd'] })).toBe(lockInputsDigest(BASE));
    expect(lockInputsDigest({ ...BASE, securityMirror: 'http://security.example/debian-security' })).not.toBe(lockInputsDigest(BASE));
  });

  test('layer digest depends on the lock and the epoch', () => {
    const plan = { base: BASE, sourceDateEpoch: 1700000000 };
    expect(layerDigest(plan, lockDigest(LOCK))).toBe(layerDigest({ ...plan }, lockDigest(LOCK)));
    expect(layerDigest(plan, lockDigest(LOCK))).not.toBe(layerDigest({ ...plan, sourceDateEpoch: 1700000001 }, lockDigest(LOCK)));
    expect(layerDigest(plan, lockDigest(LOCK))).not.toBe(layerDigest(plan, 'f'.repeat(64)));
  });

  test('layer digest names the initramfs modules; the lock does not depend on them', () => {
    const plan = { base: BASE, sourceDateEpoch: 1700000000 };
    const extra = { ...plan, initramfsModules: ['megaraid_sas', 'qla2xxx'] };
    expect(layerDigest(extra, lockDigest(LOCK))).not.toBe(layerDigest(plan, lockDigest(LOCK)));
    // A module some format already needs adds nothing: the same initramfs, the same layer.
    expect(layerDigest({ ...plan, initramfsModules: ['ext4'] }, lockDigest(LOCK))).toBe(layerDigest(plan, lockDigest(LOCK)));
  });

  test('apt file names escape the epoch colon', () => {
    expect(debFileName('bsdutils', '1:2.38.1-5+deb12u3', 'amd64')).toBe('bsdutils_1%3a2.38.1-5+deb12u3_amd64.deb');
  });
});

describe('resolution', () => {
  test("mmdebstrap's minbase selection: essential and required of the suite, apt, the plan's packages", () => {
    expect(minbaseSelection(BASE)).toEqual([
      '?narrow(?or(?archive(^bookworm$),?codename(^bookworm$)),?architecture(amd64),?essential)',
      '?narrow(?or(?archive(^bookworm$),?codename(^bookworm$)),?architecture(amd64),?and(?priority(required),?not(?essential)))',
      'apt',
      'openssh-server',
      'zstd',
    ]);
  });

  test('apt configuration of the private root', () => {
    const conf = aptConfig('/w/apt-root', 'amd64');
    expect(conf).toContain('Dir "/w/apt-root";');
    expect(conf).toContain('Dir::State::Status "/w/apt-root/var/lib/dpkg/status";');
    expect(conf).toContain('Apt::Install-Recommends "false";');
    expect(conf).toContain('pkgCacheGen::ForceEssential ",";');
  });

  test('print-uris lines become locked packages: name, version (epoch unescaped), pool path, origin', () => {
    const out = [
      `'http://deb.debian.org/debian/pool/main/u/util-linux/bsdutils_2.38.1-5%2bdeb12u3_amd64.deb' bsdutils_1%3a2.38.1-5+deb12u3_amd64.deb 100 SHA256:${'b'.repeat(64)}`,
      `'http://deb.debian.org/debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-amd64_6.1.192-2_amd64.deb' linux-image-amd64_6.1.192-2_amd64.deb 200 SHA256:${'c'.repeat(64)}`,
      '',
    ].join('\n');
    expect(parsePrintUris(out, BASE)).toEqual([LOCK.packages[1], LOCK.packages[2]]);
  });

  test('print-uris: a URI outside both archives or without SHA256 is an error', () => {
    expect(() => parsePrintUris(`'http://elsewhere/pool/x_1_all.deb' x_1_all.deb 1 SHA256:${'d'.repeat(64)}`, BASE)).toThrow(/neither the mirror nor the security archive/);
    expect(() => parsePrintUris(`'http://deb.debian.org/debian/pool/x_1_all.deb' x_1_all.deb 1 MD5Sum:${'d'.repeat(32)}`, BASE)).toThrow(/unexpected apt-get output/);
  });

  test('auto-installed marks: everything but requested, apt, Essential:yes and Priority:required', () => {
    const index: Paragraph[] = [
      { Package: 'bash', Essential: 'yes', Priority: 'required' },
      { Package: 'apt', Priority: 'important' },
      { Package: 'mount', Priority: 'required' },
      { Package: 'openssh-server', Priority: 'optional' },
      { Package: 'libwrap0', Priority: 'optional' },
      { Package: 'dbus-bin', Priority: 'optional' },
    ];
    expect(autoInstalled(index, ['openssh-server'])).toEqual(['dbus-bin', 'libwrap0']);
  });
});

test('plan validation rejects package names that are not Debian package names (they become apt arguments)', () => {
  const plan = {
    base: { ...BASE, packages: ['openssh-server', '-o', 'foo bar', 'libstdc++6'] },
    sourceDateEpoch: 1700000000,
    image: { name: 'img', role: 'worker', hostname: 'h', files: [], units: [], firstBoot: [], authorizedKeys: [], passwordLogin: false, diskSizeBytes: 2 ** 30 },
    formats: ['raw' as const],
  };
  expect(validatePlan(plan)).toEqual(['base.packages: "-o" is not a Debian package name', 'base.packages: "foo bar" is not a Debian package name']);
});

describe('derived identifiers', () => {
  const digest = '0'.repeat(64);

  test('derivedUuid is stable, RFC 4122 version-4 layout, distinct per purpose and per digest', () => {
    const u = derivedUuid(digest, 'root-fs');
    expect(u).toBe(DERIVED_ROOT_FS);
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(derivedUuid(digest, 'root-fs')).toBe(u);
    expect(derivedUuid(digest, 'esp-partition')).not.toBe(u);
    expect(derivedUuid('1'.repeat(64), 'root-fs')).not.toBe(u);
  });

  test('layer ids and disk layout are pinned', () => {
    expect(layerIds(digest)).toEqual(LAYER_IDS);
    const layout = diskLayout(2 * 1024 ** 3, digest);
    expect(layout.esp).toEqual({ offset: 1024 ** 2, size: 100 * 1024 ** 2, uuid: derivedUuid(digest, 'esp-partition') });
    expect(layout.root.offset).toBe(101 * 1024 ** 2);
    expect(layout.root.offset + layout.root.size).toBe(2 * 1024 ** 3 - 1024 ** 2);
    expect(sfdiskScript(layout)).toBe(SFDISK_SCRIPT);
  });
});

/** sha256('<digest>:root-fs'), first 16 bytes, version 4 and variant bits set (checked with Python's hashlib). */
const DERIVED_ROOT_FS = 'e545dcef-ed3e-46d7-9a0c-5ba1e7002634';
const LAYER_IDS = { rootFsUuid: DERIVED_ROOT_FS, rootHashSeed: '324cce73-9c0f-4f94-96b6-310850c93bc5', espVolumeId: '1487ed87' };
const SFDISK_SCRIPT = [
  'label: gpt',
  'label-id: 2f8e6e88-d7c8-4f18-bb93-ca322e021c00',
  'unit: sectors',
  'sector-size: 512',
  'start=2048, size=204800, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=8feaaab2-47d8-4872-91d4-6662da5e75dd, name="esp"',
  'start=206848, size=3985408, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=419ad187-cf7f-4ec1-a81f-a3f8d274d916, name="root"',
  '',
].join('\n');
