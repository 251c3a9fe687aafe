/**
 * The local repository's Packages index from cached stanzas is byte for byte what the real
 * dpkg-scanpackages prints for the same directory, and a .deb is scanned once.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { packagesIndex, splitStanzas } from '../../src/foundry/deb-index';
import { DebCache, debFileName, type LockedPackage } from '../../src/foundry/lock';

let tmp: string;
let cache: DebCache;
const locked: LockedPackage[] = [];

/** A real .deb made by dpkg-deb, added to the cache. */
async function makeDeb(name: string, version: string, architecture: string, extra: string[] = []): Promise<LockedPackage> {
  const root = path.join(tmp, 'src', `${name}-${version.replace(/:/g, '_')}`);
  await fs.mkdir(path.join(root, 'DEBIAN'), { recursive: true });
  await fs.mkdir(path.join(root, 'usr/share', name), { recursive: true });
  await fs.writeFile(path.join(root, 'usr/share', name, 'data'), `${name} ${version}\n`.repeat(50));
  const control = [`Package: ${name}`, `Version: ${version}`, `Architecture: ${architecture}`, 'Maintainer: KubeDos <dev@kubedos.dev>', 'Priority: optional', ...extra, `Description: ${name} for the index test`, ' A long description.', ' .', ' Second paragraph.', ''];
  await fs.writeFile(path.join(root, 'DEBIAN/control'), control.join('\n'));
  const out = path.join(tmp, 'src', `${name}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, out], { stdio: 'ignore' });
  const sha256 = await cache.add(out);
  return { name, version, architecture, sha256, filename: `pool/main/${name}.deb`, origin: 'mirror' };
}

/** dpkg-scanpackages itself, over a repository laid out as writeLocalRepo lays it out. */
async function realIndex(packages: readonly LockedPackage[]): Promise<string> {
  const repo = await fs.mkdtemp(path.join(tmp, 'repo-'));
  for (const p of packages) await fs.link(cache.pathOf(p.sha256), path.join(repo, debFileName(p.name, p.version, p.architecture)));
  return execFileSync('dpkg-scanpackages', ['--multiversion', '.', '/dev/null'], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-deb-index-'));
  cache = new DebCache(path.join(tmp, 'debs'));
  // Names whose byte order differs from a locale's ('-' and '+' before digits and letters), an epoch, an arch-all package.
  locked.push(
    await makeDeb('libz', '1.0', 'amd64', ['Depends: lib-x (>= 2)']),
    await makeDeb('lib-x', '2:0.5-1', 'all'),
    await makeDeb('lib1', '3.0~rc1', 'amd64', ['Pre-Depends: libz', 'Essential: yes']),
    await makeDeb('lib+b', '1', 'amd64'),
    await makeDeb('a', '0.1', 'amd64'),
  );
  // More than PARALLEL_SCAN_MIN .debs: scanned in parallel parts.
  for (let i = 0; i < 40; i++) locked.push(await makeDeb(`bulk${String(i).padStart(2, '0')}`, '1.0', 'amd64'));
});

afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

test('the index from cached stanzas is exactly dpkg-scanpackages\' output, in any lock order, for any subset', async () => {
  const real = await realIndex(locked);
  expect(splitStanzas(real)).toHaveLength(locked.length);
  expect(await packagesIndex(cache, [...locked].reverse())).toBe(real);
  const subset = [locked[0]!, locked[3]!];
  expect(await packagesIndex(cache, subset)).toBe(await realIndex(subset));
});

test('a .deb indexed before is not scanned again; a stanza that is not its package\'s is', async () => {
  const [first] = locked;
  const stanza = cache.pathOf(first!.sha256).replace(/\.deb$/, '.stanza');
  const before = await packagesIndex(cache, locked);
  // The cached stanza answers even when dpkg-scanpackages could no longer read the .deb...
  const saved = await fs.readFile(cache.pathOf(first!.sha256));
  await fs.writeFile(cache.pathOf(first!.sha256), 'not a deb');
  expect(await packagesIndex(cache, locked)).toBe(before);
  await fs.writeFile(cache.pathOf(first!.sha256), saved);
  // ...and a stanza of the wrong package is replaced by a fresh scan.
  await fs.writeFile(stanza, (await fs.readFile(stanza, 'utf8')).replace(`SHA256: ${first!.sha256}`, `SHA256: ${'0'.repeat(64)}`));
  expect(await packagesIndex(cache, locked)).toBe(before);
  expect(await fs.readFile(stanza, 'utf8')).toContain(`SHA256: ${first!.sha256}`);
});

test('builds asking at once get their own exact index, and no scan directory is left', async () => {
  const fresh = new DebCache(path.join(tmp, 'debs'));
  for (const p of locked) await fs.rm(fresh.pathOf(p.sha256).replace(/\.deb$/, '.stanza'));
  const sets = [locked, locked.slice(1), locked.slice(0, 2), [locked[4]!]];
  const got = await Promise.all(sets.map((s) => packagesIndex(fresh, s)));
  for (const [i, s] of sets.entries()) expect(got[i]).toBe(await realIndex(s));
  expect((await fs.readdir(fresh.dir)).filter((n) => n.startsWith('.scan-') || n.includes('.tmp-'))).toEqual([]);
});

test('a record dpkg-scanpackages does not print is an error naming the package', async () => {
  const ghost = { ...locked[0]!, name: 'ghost' };
  await expect(packagesIndex(cache, [ghost])).rejects.toThrow(/locked as ghost .* is another package: Package: libz/);
});
