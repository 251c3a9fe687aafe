/**
 * The Packages index of a lock's local repository, exactly as `dpkg-scanpackages --multiversion .`
 * prints it for that directory, from a cache of each .deb's stanza beside the .deb itself.
 *
 * dpkg-scanpackages forks dpkg-deb and hashes every .deb three times: ~30 ms a package, ~6 s for a
 * lock, and a platform's images index the same .debs again and again (the shared layer, then every
 * image). A stanza is a function of the .deb's bytes and its file name in the repository, and the
 * name is a function of the locked package (debFileName), so it is cached by the .deb's sha256
 * (`<sha256>.stanza`) and only .debs never indexed before are scanned, once per host even when
 * the images of a platform ask at the same moment.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import { debFileName, type DebCache, type LockedPackage } from './lock';
import { dpkgScanpackages } from './tools/dpkg-scanpackages';

/** Scans in flight in this process, by stanza path: concurrent builds wait on one scan. */
const scanning = new Map<string, Promise<void>>();

const stanzaPathOf = (cache: DebCache, pkg: LockedPackage) => cache.pathOf(pkg.sha256).replace(/\.deb$/, '.stanza');
const filenameLine = (pkg: LockedPackage) => `Filename: ./${debFileName(pkg.name, pkg.version, pkg.architecture)}`;

/**
 * The index of `packages` (each already in the cache). dpkg-scanpackages orders its records by
 * package name, then by version as a plain string, and ends each with a blank line.
 */
export async function packagesIndex(cache: DebCache, packages: readonly LockedPackage[], signal?: AbortSignal): Promise<string> {
  const stanzas = await stanzasOf(cache, packages, signal);
  const order = packages.map((pkg, i) => ({ pkg, stanza: stanzas[i]! }));
  order.sort((a, b) => byteCompare(a.pkg.name, b.pkg.name) || byteCompare(a.pkg.version, b.pkg.version));
  return order.map((o) => `${o.stanza}\n`).join('');
}

/** Perl's `cmp` on ASCII strings (what dpkg-scanpackages sorts with). */
function byteCompare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function stanzasOf(cache: DebCache, packages: readonly LockedPackage[], signal?: AbortSignal): Promise<string[]> {
  const missing: LockedPackage[] = [];
  const waits: Promise<void>[] = [];
  for (const pkg of packages) {
    const file = stanzaPathOf(cache, pkg);
    if (await readStanza(file, pkg)) continue;
    const pending = scanning.get(file);
    if (pending) waits.push(pending);
    else missing.push(pkg);
  }
  let own: Promise<void> | undefined;
  if (missing.length > 0) {
    own = scanOnEveryCore(cache, missing, signal).finally(() => {
      for (const pkg of missing) scanning.delete(stanzaPathOf(cache, pkg));
    });
    for (const pkg of missing) scanning.set(stanzaPathOf(cache, pkg), own);
  }
  // Another build's scan may fail or be cancelled on its own account: then this one scans what it still lacks.
  await Promise.allSettled(waits);
  await own;
  const out: string[] = [];
  for (const pkg of packages) {
    const stanza = await readStanza(stanzaPathOf(cache, pkg), pkg);
    if (stanza !== undefined) {
      out.push(stanza);
      continue;
    }
    if (missing.includes(pkg)) throw new BuildFailedError(`dpkg-scanpackages' record of ${pkg.name} ${pkg.version} does not name it as locked (${filenameLine(pkg)}, SHA256 ${pkg.sha256})`);
    return stanzasOf(cache, packages, signal);
  }
  return out;
}

/** A cached stanza, unless absent or not this package's (a corrupt cache entry is scanned again). */
async function readStanza(file: string, pkg: LockedPackage): Promise<string | undefined> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  return isStanzaOf(text, pkg) ? text : undefined;
}

function isStanzaOf(stanza: string, pkg: LockedPackage): boolean {
  const lines = stanza.split('\n');
  return lines[0] === `Package: ${pkg.name}` && lines.includes(filenameLine(pkg)) && lines.includes(`SHA256: ${pkg.sha256}`);
}

/** Below this many .debs one dpkg-scanpackages is as fast as several. */
const PARALLEL_SCAN_MIN = 32;

/** dpkg-scanpackages is single-threaded: a cold lock's few hundred .debs are split across the cores. */
async function scanOnEveryCore(cache: DebCache, packages: readonly LockedPackage[], signal?: AbortSignal): Promise<void> {
  const parts = packages.length < PARALLEL_SCAN_MIN ? 1 : Math.max(1, os.availableParallelism());
  const size = Math.ceil(packages.length / parts);
  const chunks = Array.from({ length: Math.ceil(packages.length / size) }, (_, i) => packages.slice(i * size, (i + 1) * size));
  const results = await Promise.allSettled(chunks.map((chunk) => scanInto(cache, chunk, signal)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** dpkg-scanpackages over hard links of `packages` under their repository names; one stanza file each. */
async function scanInto(cache: DebCache, packages: readonly LockedPackage[], signal?: AbortSignal): Promise<void> {
  const dir = path.join(cache.dir, `.scan-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(dir, { recursive: true });
  try {
    for (const pkg of packages) {
      const dest = path.join(dir, debFileName(pkg.name, pkg.version, pkg.architecture));
      await fs.link(cache.pathOf(pkg.sha256), dest).catch(() => fs.copyFile(cache.pathOf(pkg.sha256), dest));
    }
    const { stdout } = await dpkgScanpackages(dir, { signal });
    const bySha = new Map<string, string>();
    for (const stanza of splitStanzas(stdout)) {
      const sha = /^SHA256: ([0-9a-f]{64})$/m.exec(stanza)?.[1];
      if (sha) bySha.set(sha, stanza);
    }
    for (const pkg of packages) {
      const stanza = bySha.get(pkg.sha256);
      if (!stanza) throw new BuildFailedError(`dpkg-scanpackages printed no record for ${pkg.name} ${pkg.version} (sha256 ${pkg.sha256})`);
      if (!isStanzaOf(stanza, pkg)) throw new BuildFailedError(`the .deb locked as ${pkg.name} ${pkg.version} ${pkg.architecture} (sha256 ${pkg.sha256}) is another package: ${stanza.split('\n')[0]}`);
      const file = stanzaPathOf(cache, pkg);
      const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
      await fs.writeFile(tmp, stanza);
      await fs.rename(tmp, file);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Records of a Packages index, each with its fields' final newline and without the blank line after it. */
export function splitStanzas(index: string): string[] {
  return index.split(/\n\n/).filter((s) => s.trim() !== '').map((s) => `${s.replace(/^\n+/, '')}\n`);
}
