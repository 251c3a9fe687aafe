/**
 * Resolution: the package set of a base, answered by the archives WITHOUT installing anything.
 * apt-get runs on the host against a private apt root (indexes of the suite, its updates and its
 * security suite, an empty dpkg status) and prints the URI and SHA256 of every .deb that
 * mmdebstrap's `minbase` variant plus the plan's packages would install; missing .debs are
 * fetched into the content-addressed cache and checked. The result is the lock.
 *
 * Every layer is then installed from the lock (rootfs.ts), whether the lock was just resolved or
 * given: one install path, so a locked rebuild is bit-identical to the first build by construction.
 *
 * The selection is mmdebstrap's own for `--variant=minbase` (its `required` variant): the
 * Essential:yes packages of the suite, the Priority:required ones, apt, plus the plan's packages.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import type { BuildContext } from './context';
import { DebCache, lockDigest, lockInputsDigest, sortPackages, type Lock, type LockedPackage, type PackageOrigin } from './lock';
import { securityMirrorOf, type BasePlan } from './plan';
import { sourcesList } from './rootfs';
import { aptGetPrintUris, aptGetUpdate } from './tools/apt-get';

/** How many .debs are fetched at once on a cold cache. */
const FETCH_CONCURRENCY = 6;

/** apt configuration of a private root: native architecture only, host keyrings, no recommends. */
export function aptConfig(root: string, architecture: string): string {
  return [
    `Apt::Architecture "${architecture}";`,
    `Apt::Architectures "${architecture}";`,
    `Dir "${root}";`,
    `Dir::State::Status "${root}/var/lib/dpkg/status";`,
    'Dir::Etc::Trusted "/etc/apt/trusted.gpg";',
    'Dir::Etc::TrustedParts "/etc/apt/trusted.gpg.d";',
    // As mmdebstrap: apt must not add itself to the Essential set.
    'pkgCacheGen::ForceEssential ",";',
    'Apt::Install-Recommends "false";',
    'Acquire::Languages "none";',
    // Downloads run as root: the private root is not readable by _apt.
    'APT::Sandbox::User "root";',
    '',
  ].join('\n');
}

/** What mmdebstrap --variant=minbase --include=<packages> installs, as apt-get arguments. */
export function minbaseSelection(base: Pick<BasePlan, 'suite' | 'architecture' | 'packages'>): string[] {
  const release = `?or(?archive(^${base.suite}$),?codename(^${base.suite}$)),?architecture(${base.architecture})`;
  return [
    `?narrow(${release},?essential)`,
    `?narrow(${release},?and(?priority(required),?not(?essential)))`,
    'apt',
    ...[...new Set(base.packages)].sort(),
  ];
}

/** Parse `apt-get --print-uris` output into locked packages (pool path and origin from the URI). */
export function parsePrintUris(stdout: string, base: Pick<BasePlan, 'mirror' | 'securityMirror'>): LockedPackage[] {
  const archives: [PackageOrigin, string][] = [
    ['security', `${securityMirrorOf(base)}/`],
    ['mirror', `${base.mirror.replace(/\/+$/, '')}/`],
  ];
  const out: LockedPackage[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^'([^']+)' (\S+) \d+ SHA256:([0-9a-f]{64})$/.exec(line.trim());
    if (!m) throw new BuildFailedError(`resolution: unexpected apt-get output line: ${line}`);
    const [, uri, file, sha256] = m as unknown as [string, string, string, string];
    const parts = /^([^_]+)_([^_]+)_([^_]+)\.deb$/.exec(file);
    if (!parts) throw new BuildFailedError(`resolution: unexpected .deb file name ${file}`);
    const archive = archives.find(([, prefix]) => uri.startsWith(prefix));
    if (!archive) throw new BuildFailedError(`resolution: ${uri} is in neither the mirror nor the security archive`);
    out.push({
      name: parts[1]!,
      version: decodeURIComponent(parts[2]!),
      architecture: parts[3]!,
      sha256,
      filename: decodeURIComponent(uri.slice(archive[1].length)),
      origin: archive[0],
    });
  }
  return out;
}

async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export interface ResolveOptions {
  /** Scratch directory (the private apt root is made in it and removed afterwards). */
  workDir: string;
  /** The content-addressed .deb cache; every locked .deb is in it when resolution returns. */
  debCacheDir: string;
  signal?: AbortSignal;
}

/** Resolve a base against its archives: the lock of what a build installs today. */
export async function resolveLock(base: BasePlan, options: ResolveOptions): Promise<Lock> {
  const root = path.join(options.workDir, 'apt-root');
  await fs.rm(root, { recursive: true, force: true });
  for (const dir of ['etc/apt/apt.conf.d', 'etc/apt/sources.list.d', 'etc/apt/preferences.d', 'var/lib/dpkg', 'var/lib/apt/lists/partial', 'var/cache/apt/archives/partial']) {
    await fs.mkdir(path.join(root, dir), { recursive: true });
  }
  await fs.writeFile(path.join(root, 'var/lib/dpkg/status'), '');
  await fs.writeFile(path.join(root, 'etc/apt/sources.list'), sourcesList(base));
  const conf = path.join(root, 'apt.conf');
  await fs.writeFile(conf, aptConfig(root, base.architecture));
  try {
    await aptGetUpdate(conf, { signal: options.signal });
    const { stdout } = await aptGetPrintUris(conf, minbaseSelection(base), { signal: options.signal });
    const packages = parsePrintUris(stdout, base);
    if (packages.length === 0) throw new BuildFailedError('resolution: apt selected no packages');
    const cache = new DebCache(options.debCacheDir);
    await mapLimit(packages, FETCH_CONCURRENCY, (pkg) => cache.ensure(pkg, base, options.signal));
    return { lockVersion: 1, suite: base.suite, architecture: base.architecture, baseInputs: lockInputsDigest(base), packages: sortPackages(packages) };
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

/**
 * Step: the lock of this build. A given lock is checked against the base and used as is;
 * without one the base is resolved against the archives now.
 */
export async function resolvePackages(ctx: BuildContext): Promise<void> {
  const given = ctx.options.lock;
  if (given && given.baseInputs !== lockInputsDigest(ctx.plan.base)) {
    throw new BuildFailedError(
      'the lock was resolved for a different base (suite, mirrors, components or packages changed)',
      'build without the lock to resolve the new base, then keep the new kubedos.lock',
    );
  }
  const lock = given ?? (await resolveLock(ctx.plan.base, { workDir: ctx.workDir, debCacheDir: ctx.options.debCacheDir, signal: ctx.options.signal }));
  ctx.lock = lock;
  ctx.lockDigest = lockDigest(lock);
  ctx.log.info({ lock: ctx.lockDigest.slice(0, 16), packages: lock.packages.length, given: Boolean(given) }, 'package set');
}
