/**
 * The rootfs layer: mmdebstrap output, sealed (no host keys, empty machine-id, no random seed,
 * no passwords) and normalised (mtimes clamped to the epoch), cached as a directory under
 * `<cacheDir>/layers/<layer digest>/rootfs`. The cached tree is never modified after it is
 * published: the payload is applied to a copy of the filesystem image made from it (see ext4.ts).
 *
 * Layer digest = sha256(canonical base + epoch + lock digest). Without a lock the base is resolved
 * against the mirror in the same mmdebstrap run, the lock is produced from it, and the layer is
 * published under the digest of that lock, so a later build given the lock is a cache hit.
 * With a lock, mmdebstrap installs from a local flat repository (copy://) made of the locked
 * .debs from the content-addressed cache: exactly that set, offline, whatever the mirror holds now.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import type { BuildContext, Layer } from './context';
import { parseDeb822 } from './deb822';
import { DebCache, debFileName, lockDigest, lockInputsDigest, resolveLock, type Lock } from './lock';
import { baseDigest, canonicalJson, securityMirrorOf, sha256Hex, type BasePlan, type BuildPlan } from './plan';
import { dpkgScanpackages } from './tools/dpkg-scanpackages';
import { mmdebstrap } from './tools/mmdebstrap';

/** dpkg path filters: no documentation, manuals or translations in images. */
export const DPKG_PATH_FILTERS = [
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/locale/*',
  'path-include=/usr/share/locale/locale.alias',
  'path-exclude=/usr/share/lintian/*',
] as const;

/** Sealing done inside mmdebstrap (customize hook, `$1` is the tree): the image carries no identity. */
export const SEAL_HOOK =
  'rm -f "$1"/etc/ssh/ssh_host_* "$1"/var/lib/systemd/random-seed "$1"/var/lib/dbus/machine-id' +
  ' && : > "$1"/etc/machine-id' +
  // mmdebstrap copies the host's resolv.conf and hostname: never let the builder leak in.
  ' && rm -f "$1"/etc/resolv.conf && echo localhost > "$1"/etc/hostname' +
  // No passwords: every account must be locked (`*` or `!…`); fail the build otherwise.
  ' && if cut -d: -f2 "$1"/etc/shadow | grep -qv "^[!*]"; then echo "kubedos: password hash in /etc/shadow" >&2; exit 1; fi';

export function layerDigest(plan: Pick<BuildPlan, 'base' | 'sourceDateEpoch'>, lockDigestHex: string): string {
  return sha256Hex(canonicalJson({ kind: 'kubedos.layer/v1', base: baseDigest(plan), lock: lockDigestHex }));
}

/**
 * The apt sources of an image: the suite, its updates and its security suite. A single mirror URL
 * would give mmdebstrap only the base suite (and an outdated kernel).
 */
export function sourcesList(base: BasePlan): string {
  const comps = base.components.join(' ');
  const mirror = base.mirror.replace(/\/+$/, '');
  return [
    `deb ${mirror} ${base.suite} ${comps}`,
    `deb ${mirror} ${base.suite}-updates ${comps}`,
    `deb ${securityMirrorOf(base)} ${base.suite}-security ${comps}`,
    '',
  ].join('\n');
}

function layersDir(ctx: BuildContext): string {
  return path.join(ctx.options.cacheDir, 'layers');
}

async function readLayer(dir: string): Promise<Layer | undefined> {
  try {
    const meta = JSON.parse(await fs.readFile(path.join(dir, 'layer.json'), 'utf8')) as { digest: string; kernel: string; initrd: string };
    const rootfs = path.join(dir, 'rootfs');
    return { digest: meta.digest, dir, rootfs, kernel: path.join(rootfs, meta.kernel), initrd: path.join(rootfs, meta.initrd) };
  } catch {
    return undefined;
  }
}

/** Step: find the cached layer for the plan's base and lock, or build (and publish) it. */
export async function prepareRootfs(ctx: BuildContext): Promise<void> {
  const { plan } = ctx;
  const lock = ctx.options.lock;
  if (lock && lock.baseInputs !== lockInputsDigest(plan.base)) {
    throw new BuildFailedError(
      'the lock was resolved for a different base (suite, mirrors, components or packages changed)',
      'build without the lock to resolve the new base, then keep the new kubedos.lock',
    );
  }
  if (lock) {
    const digest = layerDigest(plan, lockDigest(lock));
    const cached = await readLayer(path.join(layersDir(ctx), digest));
    if (cached) {
      ctx.log.info({ layer: digest.slice(0, 16) }, 'rootfs layer cache hit');
      ctx.layer = cached;
      ctx.lock = lock;
      ctx.lockDigest = lockDigest(lock);
      return;
    }
  }
  await buildRootfsLayer(ctx, lock);
}

async function writeLocalRepo(ctx: BuildContext, lock: Lock, repo: string): Promise<void> {
  const cache = new DebCache(ctx.options.debCacheDir);
  await fs.mkdir(repo, { recursive: true });
  for (const pkg of lock.packages) {
    const cached = await cache.ensure(pkg, ctx.plan.base, ctx.options.signal);
    await fs.link(cached, path.join(repo, debFileName(pkg.name, pkg.version, pkg.architecture)));
  }
  const { stdout } = await dpkgScanpackages(repo, { signal: ctx.options.signal });
  await fs.writeFile(path.join(repo, 'Packages'), stdout);
  // mmdebstrap selects the essential set with ?archive/?codename of the suite: the flat repo
  // declares it in a Release file (unsigned; the source line says trusted=yes, the .debs were
  // checked against the lock's sha256).
  const packages = Buffer.from(stdout);
  const date = new Date(ctx.plan.sourceDateEpoch * 1000).toUTCString().replace('GMT', 'UTC');
  await fs.writeFile(
    path.join(repo, 'Release'),
    [
      'Origin: kubedos', 'Label: kubedos-lock', `Suite: ${lock.suite}`, `Codename: ${lock.suite}`, `Date: ${date}`,
      `Architectures: ${lock.architecture} all`, 'SHA256:', ` ${sha256Hex(packages)} ${packages.length} Packages`, '',
    ].join('\n'),
  );
}

async function buildRootfsLayer(ctx: BuildContext, lock: Lock | undefined): Promise<void> {
  const { plan } = ctx;
  await fs.mkdir(layersDir(ctx), { recursive: true });
  const staging = path.join(layersDir(ctx), `.staging-${process.pid}-${randomBytes(4).toString('hex')}`);
  const rootfs = path.join(staging, 'rootfs');
  const out = path.join(ctx.workDir, 'resolution');
  const debsDir = path.join(out, 'debs');
  const listsDir = path.join(out, 'lists');
  await fs.mkdir(staging, { recursive: true });
  await fs.mkdir(debsDir, { recursive: true });
  await fs.mkdir(listsDir, { recursive: true });
  const imageSources = path.join(ctx.workDir, 'sources.list');
  await fs.writeFile(imageSources, sourcesList(plan.base));
  let buildSources = imageSources;
  if (lock) {
    const repo = path.join(ctx.workDir, 'repo');
    await writeLocalRepo(ctx, lock, repo);
    buildSources = path.join(ctx.workDir, 'sources.locked.list');
    await fs.writeFile(buildSources, `deb [trusted=yes] copy://${repo} ./\n`);
  }
  const include = lock ? lock.packages.map((p) => `${p.name}=${p.version}`) : [...new Set(plan.base.packages)].sort();
  try {
    await mmdebstrap(
      {
        suite: plan.base.suite,
        target: rootfs,
        sourcesFile: buildSources,
        variant: 'minbase',
        mode: 'root',
        architecture: plan.base.architecture,
        include,
        dpkgOptions: DPKG_PATH_FILTERS,
        // Keep the essential set's .debs until the customize hook copies them out for the lock.
        skip: ['essential/unlink'],
        customizeHooks: [
          `sync-out /var/cache/apt/archives ${debsDir}`,
          `sync-out /var/lib/apt/lists ${listsDir}`,
          // The image's sources are the real archives, whatever the build installed from.
          'rm -f "$1"/etc/apt/sources.list.d/0000sources.list',
          `upload ${imageSources} /etc/apt/sources.list`,
          SEAL_HOOK,
        ],
      },
      { sourceDateEpoch: plan.sourceDateEpoch, signal: ctx.options.signal, onOutput: (_s, chunk) => ctx.log.debug({ tool: 'mmdebstrap' }, chunk.trimEnd()) },
    );
    ctx.ranMmdebstrap = true;
    const cache = new DebCache(ctx.options.debCacheDir);
    const resolved = lock ?? (await resolveLock({ rootfs, debsDir, listsDir }, plan.base, cache));
    if (lock) await checkInstalledMatchesLock(rootfs, lock);
    const digest = layerDigest(plan, lockDigest(resolved));
    await clampMtimes(rootfs, plan.sourceDateEpoch);
    const boot = await fs.readdir(path.join(rootfs, 'boot'));
    const kernels = boot.filter((f) => f.startsWith('vmlinuz-')).sort();
    const initrds = boot.filter((f) => f.startsWith('initrd.img-')).sort();
    if (kernels.length !== 1 || initrds.length !== 1) {
      throw new BuildFailedError(`the rootfs must hold exactly one kernel and one initrd in /boot (found ${kernels.join(', ') || 'no kernel'}; ${initrds.join(', ') || 'no initrd'})`, 'include linux-image-amd64 and initramfs-tools in base.packages');
    }
    await fs.writeFile(
      path.join(staging, 'layer.json'),
      `${JSON.stringify({ digest, baseDigest: baseDigest(plan), lockDigest: lockDigest(resolved), kernel: `boot/${kernels[0]}`, initrd: `boot/${initrds[0]}` }, null, 2)}\n`,
    );
    const final = path.join(layersDir(ctx), digest);
    try {
      await fs.rename(staging, final);
    } catch {
      ctx.log.info({ layer: digest.slice(0, 16) }, 'layer was published concurrently; keeping the existing one');
    }
    ctx.layer = await readLayer(final);
    ctx.lock = resolved;
    ctx.lockDigest = lockDigest(resolved);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
    await fs.rm(out, { recursive: true, force: true });
  }
}

async function checkInstalledMatchesLock(rootfs: string, lock: Lock): Promise<void> {
  const status = parseDeb822(await fs.readFile(path.join(rootfs, 'var/lib/dpkg/status'), 'utf8'));
  const installed = new Set(status.filter((p) => p.Status === 'install ok installed').map((p) => `${p.Package} ${p.Version} ${p.Architecture}`));
  const locked = new Set(lock.packages.map((p) => `${p.name} ${p.version} ${p.architecture}`));
  const extra = [...installed].filter((x) => !locked.has(x));
  const missing = [...locked].filter((x) => !installed.has(x));
  if (extra.length || missing.length) {
    throw new BuildFailedError(`the locked build installed a different set: extra [${extra.join(', ')}], missing [${missing.join(', ')}]`);
  }
}

/** Clamp every mtime (and atime) newer than the epoch down to it; symlinks included. */
export async function clampMtimes(root: string, epoch: number): Promise<void> {
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) stack.push(p);
      const st = await fs.lstat(p);
      if (st.mtimeMs / 1000 > epoch || st.atimeMs / 1000 > epoch) await fs.lutimes(p, epoch, Math.min(st.mtimeMs / 1000, epoch));
    }
  }
  const st = await fs.lstat(root);
  await fs.lutimes(root, epoch, Math.min(st.mtimeMs / 1000, epoch));
}

/** Every path of a tree, relative with a leading `/`, in a stable order (for the debugfs sweep). */
export async function listTree(root: string): Promise<string[]> {
  const out: string[] = ['/'];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = (await fs.readdir(dir, { withFileTypes: true })).map((e) => e).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      out.push(r);
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
    }
  };
  await walk(root, '');
  return out;
}
