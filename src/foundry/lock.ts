/**
 * kubedos.lock: the exact package set of a rootfs layer. Produced by resolution against the
 * mirror (resolve.ts); every build installs exactly that set from a local,
 * content-addressed .deb cache (fetching a missing .deb from the archive by its pool path and
 * checking its sha256), so a rebuild still works after the mirror moved on.
 *
 * Serialised as canonical JSON: keys sorted, packages sorted by name and architecture, two-space
 * indent, trailing newline. Its sha256 (the lock digest) is part of the layer cache key.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError, LockedPackageUnavailableError } from '../errors';
import { logger } from '../log';
import { canonicalJson, securityMirrorOf, sha256Hex, type BasePlan } from './plan';

/** Which archive a package's pool path is relative to. */
export type PackageOrigin = 'mirror' | 'security';

export interface LockedPackage {
  name: string;
  version: string;
  architecture: string;
  /** sha256 of the .deb; also its name in the .deb cache. */
  sha256: string;
  /** Pool path inside the archive, e.g. `pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb`. */
  filename: string;
  origin: PackageOrigin;
}

export interface Lock {
  lockVersion: 1;
  suite: string;
  architecture: string;
  /** Digest of the base (suite, mirrors, components, requested packages) the lock was resolved for. */
  baseInputs: string;
  packages: LockedPackage[];
}

/** Digest of the parts of a base that a lock answers for (not the epoch, not the payload). */
export function lockInputsDigest(base: BasePlan): string {
  return sha256Hex(canonicalJson({ ...base, packages: [...new Set(base.packages)].sort(), securityMirror: securityMirrorOf(base) }));
}

/** Packages in lock order: by name, then architecture. */
export function sortPackages(packages: readonly LockedPackage[]): LockedPackage[] {
  return [...packages].sort((a, b) => (a.name === b.name ? a.architecture.localeCompare(b.architecture) : a.name < b.name ? -1 : 1));
}

/** Canonical, stable text of a lock (what kubedos.lock contains). */
export function serializeLock(lock: Lock): string {
  const sorted = { ...lock, packages: sortPackages(lock.packages) };
  return `${JSON.stringify(JSON.parse(canonicalJson(sorted)), null, 2)}\n`;
}

/** Parse and check kubedos.lock text. */
export function parseLock(text: string, source = 'kubedos.lock'): Lock {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new BuildFailedError(`${source}: not valid JSON`, 'regenerate the lock by building without it', { cause: err });
  }
  const lock = data as Lock;
  const ok =
    lock && lock.lockVersion === 1 && typeof lock.suite === 'string' && typeof lock.architecture === 'string' &&
    typeof lock.baseInputs === 'string' && Array.isArray(lock.packages) &&
    lock.packages.every(
      (p) => typeof p.name === 'string' && typeof p.version === 'string' && typeof p.architecture === 'string' &&
        /^[0-9a-f]{64}$/.test(p.sha256) && typeof p.filename === 'string' && (p.origin === 'mirror' || p.origin === 'security'),
    );
  if (!ok) throw new BuildFailedError(`${source}: not a kubedos lock (version 1)`, 'regenerate the lock by building without it');
  return { ...lock, packages: sortPackages(lock.packages) };
}

/** sha256 of the canonical lock text. */
export function lockDigest(lock: Lock): string {
  return sha256Hex(serializeLock(lock));
}

/** sha256 of a whole file, read sequentially through one reused buffer. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** The content-addressed .deb cache: `<dir>/<sha256>.deb`. */
/** Fetches in flight in this process, by cache path. */
const fetching = new Map<string, Promise<string>>();

export class DebCache {
  constructor(readonly dir: string) {}

  pathOf(sha256: string): string {
    return path.join(this.dir, `${sha256}.deb`);
  }

  async has(sha256: string): Promise<boolean> {
    return fs.access(this.pathOf(sha256)).then(() => true, () => false);
  }

  /** Add a file (hard link when possible, copy otherwise); returns its sha256. */
  async add(file: string): Promise<string> {
    const digest = await sha256File(file);
    if (await this.has(digest)) return digest;
    await fs.mkdir(this.dir, { recursive: true });
    const tmp = this.tempPathOf(digest);
    await fs.link(file, tmp).catch(() => fs.copyFile(file, tmp));
    await fs.rename(tmp, this.pathOf(digest));
    return digest;
  }

  /** A temporary name beside the entry, unique to this writer (builds of one process run at once). */
  private tempPathOf(sha256: string): string {
    return `${this.pathOf(sha256)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  }

  /**
   * Make sure a locked package is cached, fetching it from its archive when absent. Builds of one
   * process that need the same .deb at once (the images of a platform) fetch it once.
   */
  async ensure(pkg: LockedPackage, base: BasePlan, signal?: AbortSignal): Promise<string> {
    if (await this.has(pkg.sha256)) return this.pathOf(pkg.sha256);
    const key = this.pathOf(pkg.sha256);
    let pending = fetching.get(key);
    if (!pending) {
      pending = this.fetch(pkg, base, signal).finally(() => fetching.delete(key));
      fetching.set(key, pending);
    }
    return pending;
  }

  private async fetch(pkg: LockedPackage, base: BasePlan, signal?: AbortSignal): Promise<string> {
    const archive = pkg.origin === 'security' ? securityMirrorOf(base) : base.mirror.replace(/\/+$/, '');
    const url = `${archive}/${pkg.filename}`;
    logger.info({ pkg: pkg.name, version: pkg.version, url }, 'fetching locked .deb missing from the cache');
    let body: Buffer;
    try {
      const res = await fetch(url, { signal });
      if (!res.ok) throw new LockedPackageUnavailableError(pkg.name, pkg.version, `${url}: HTTP ${res.status}`);
      body = Buffer.from(await res.arrayBuffer());
    } catch (err) {
      if (err instanceof LockedPackageUnavailableError) throw err;
      throw new LockedPackageUnavailableError(pkg.name, pkg.version, `${url}: ${(err as Error).message}`);
    }
    const got = sha256Hex(body);
    if (got !== pkg.sha256) throw new LockedPackageUnavailableError(pkg.name, pkg.version, `${url}: sha256 ${got} does not match the lock`);
    await fs.mkdir(this.dir, { recursive: true });
    const tmp = this.tempPathOf(pkg.sha256);
    await fs.writeFile(tmp, body);
    await fs.rename(tmp, this.pathOf(pkg.sha256));
    return this.pathOf(pkg.sha256);
  }
}

/** The file name apt gives a downloaded .deb (`:` in versions is escaped as `%3a`). */
export function debFileName(name: string, version: string, architecture: string): string {
  return `${name}_${version.replace(/:/g, '%3a')}_${architecture}.deb`;
}
