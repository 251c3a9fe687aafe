/**
 * The shared layer: which part of an image's lock is its platform's shared base (a closure over
 * the lock's own dependency fields), and when a plan is installed on it. Pure functions, no tools.
 */
import { parseSpec } from '../../src/platform';
import type { Paragraph } from '../../src/foundry/deb822';
import { planFromSpec } from '../../src/foundry/from-spec';
import type { LockedPackage } from '../../src/foundry/lock';
import { validatePlan } from '../../src/foundry/plan';
import { layerDigest } from '../../src/foundry/rootfs';
import { dependencyClauses, sharedLayerDigest, sharedSubset } from '../../src/foundry/shared-layer';

const pkg = (name: string, version = '1.0'): LockedPackage => ({
  name, version, architecture: 'amd64', sha256: `${name}`.padEnd(64, '0').slice(0, 64), filename: `pool/main/${name}.deb`, origin: 'mirror',
});

/** A small archive: an essential core, apt, the platform's package and a role's packages. */
const INDEX: Paragraph[] = [
  { Package: 'base-files', Essential: 'yes', Priority: 'required' },
  { Package: 'libc6', Priority: 'required' },
  { Package: 'mawk', Priority: 'required', Provides: 'awk' },
  { Package: 'apt', Priority: 'important', Depends: 'libc6 (>= 2.36), libapt-pkg6.0 (>= 2.6.1)' },
  { Package: 'libapt-pkg6.0', Priority: 'optional', Depends: 'libc6' },
  { Package: 'chrony', Priority: 'optional', 'Pre-Depends': 'adduser', Depends: 'libc6, ucf | debconf, awk' },
  { Package: 'adduser', Priority: 'important', Depends: 'passwd:any' },
  { Package: 'passwd', Priority: 'required' },
  { Package: 'ucf', Priority: 'optional' },
  // Only the role needs these; debconf is another way to meet chrony's clause, which ucf already met.
  { Package: 'containerd', Priority: 'optional', Depends: 'runc (>= 1.0) | runc-any, libc6' },
  { Package: 'runc', Priority: 'optional', Depends: 'libc6' },
  { Package: 'debconf', Priority: 'important' },
];
const LOCK = INDEX.map((p) => pkg(p.Package!));
const names = (ps: readonly LockedPackage[] | undefined) => ps?.map((p) => p.name).sort();

describe('the shared part of a lock', () => {
  test('dependency clauses: alternatives, version constraints and architecture qualifiers reduced to names', () => {
    expect(dependencyClauses('libc6 (>= 2.36), ucf | debconf (>= 1.5), passwd:any')).toEqual([['libc6'], ['ucf', 'debconf'], ['passwd']]);
    expect(dependencyClauses(undefined)).toEqual([]);
  });

  test("the minbase selection and the platform's packages with their closure; the role's packages stay out", () => {
    expect(names(sharedSubset(LOCK, INDEX, ['chrony']))).toEqual(['adduser', 'apt', 'base-files', 'chrony', 'libapt-pkg6.0', 'libc6', 'mawk', 'passwd', 'ucf']);
  });

  test('a clause met through Provides, or by an alternative already chosen, adds nothing', () => {
    // awk is mawk's; ucf meets `ucf | debconf`, so debconf (in the lock for another reason) is not pulled in.
    expect(names(sharedSubset(LOCK, INDEX, ['chrony']))).not.toContain('debconf');
  });

  test('an alternative the lock lacks is passed over for the next one', () => {
    const index = INDEX.filter((p) => p.Package !== 'ucf');
    const lock = LOCK.filter((p) => p.name !== 'ucf');
    expect(names(sharedSubset(lock, index, ['chrony']))).toContain('debconf');
  });

  test('a lock with no way to meet a clause, or without a shared package, cannot be split', () => {
    const index = INDEX.filter((p) => p.Package !== 'libapt-pkg6.0');
    expect(sharedSubset(LOCK.filter((p) => p.name !== 'libapt-pkg6.0'), index, ['chrony'])).toBeUndefined();
    expect(sharedSubset(LOCK, INDEX, ['no-such-package'])).toBeUndefined();
  });

  test('a pinned platform package (name=version) is found by its name', () => {
    expect(names(sharedSubset(LOCK, INDEX, ['chrony=1.0']))).toContain('chrony');
  });

  test("the shared layer's digest names its packages exactly and the epoch, not their order", () => {
    const subset = sharedSubset(LOCK, INDEX, ['chrony'])!;
    expect(sharedLayerDigest([...subset].reverse(), 1, 'bookworm')).toBe(sharedLayerDigest(subset, 1, 'bookworm'));
    expect(sharedLayerDigest(subset, 2, 'bookworm')).not.toBe(sharedLayerDigest(subset, 1, 'bookworm'));
    const rebuilt = subset.map((p) => (p.name === 'chrony' ? { ...p, sha256: 'f'.repeat(64) } : p));
    expect(sharedLayerDigest(rebuilt, 1, 'bookworm')).not.toBe(sharedLayerDigest(subset, 1, 'bookworm'));
  });
});

describe('which plans are installed on the shared layer', () => {
  const spec = parseSpec(
    `apiVersion: kubedos.dev/v1alpha1
kind: Platform
metadata: { name: t }
base: { sourceDateEpoch: 1700000000, packages: [chrony] }
images:
  plain: {}
  worker: { packages: [containerd] }
  again: { packages: [chrony] }
`,
    'kubedos.yaml',
  );
  const plan = (image: string) => planFromSpec(spec, image, { sourceDateEpoch: 1700000000, formats: ['raw'] });

  test("an image with packages of its own names the platform's packages; one without, or naming only those, does not", () => {
    expect(plan('worker').sharedPackages).toEqual(spec.base.packages);
    expect(plan('worker').base.packages).toEqual(expect.arrayContaining(['chrony', 'containerd']));
    expect(plan('plain').sharedPackages).toBeUndefined();
    expect(plan('again').sharedPackages).toBeUndefined();
    expect(validatePlan(plan('worker'))).toEqual([]);
  });

  test('its layer is of another kind than one installed in one pass; a shared package it lacks is refused', () => {
    const worker = plan('worker');
    const { sharedPackages: _, ...onePass } = worker;
    expect(layerDigest(worker, 'a'.repeat(64))).not.toBe(layerDigest(onePass, 'a'.repeat(64)));
    expect(validatePlan({ ...worker, sharedPackages: [...worker.sharedPackages!, 'nginx'] })).toEqual([expect.stringMatching(/sharedPackages: "nginx" is not among base.packages/)]);
  });
});
