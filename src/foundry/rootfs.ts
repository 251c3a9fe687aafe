/**
 * The rootfs layer: mmdebstrap output, sealed (no host keys, empty machine-id, no random seed,
 * no passwords) and normalised (mtimes clamped to the epoch), cached as a directory under
 * `<cacheDir>/layers/<layer digest>/rootfs`. The cached tree is never modified after it is
 * published: the payload is applied to a copy of the filesystem image made from it (see ext4.ts).
 *
 * Layer digest = sha256(canonical base + epoch + lock digest). Every layer is installed the same
 * way, from its lock: mmdebstrap reads a local flat repository (copy://) made of exactly the locked
 * .debs from the content-addressed cache, offline, whatever the mirror holds now. A build without
 * a lock resolves one first (resolve.ts: apt on the host, no install), so the first build and any
 * later rebuild from its lock run the very same mmdebstrap and give the same tree. The image's
 * /etc/apt/sources.list names the plan's real archives; no apt indexes or .debs are left in it.
 * An image with packages of its own over its platform's is installed on a copy of the platform's
 * shared layer (`<cacheDir>/layers/shared-<digest>`, shared-layer.ts), its own packages on top.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import type { BuildContext, Layer } from './context';
import { packagesIndex } from './deb-index';
import { parseDeb822, type Paragraph } from './deb822';
import { DebCache, debFileName, lockDigest, type Lock, type LockedPackage } from './lock';
import { baseDigest, canonicalJson, securityMirrorOf, sha256Hex, type BasePlan, type BuildPlan } from './plan';
import { initramfsModules } from './formats';
import { MODULE_NAME } from './formats/early-boot';
import { cpTree } from './tools/cp';
import { mmdebstrap } from './tools/mmdebstrap';
import { removeScratchTree, sweepStaleStaging } from './scratch';
import { SHARED_LAYER_KIND, sharedLayerDigest, sharedSubset } from './shared-layer';
import { clampMtimes } from './tree';

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

/**
 * The initramfs, made once. Left alone, dpkg builds it twice (the kernel's postinst, then the
 * initramfs-tools trigger that later packages set off): ~25 s each, half the install. During the
 * install update-initramfs is diverted to a no-op; after it, the real one runs once with every
 * package in place (the same bytes as the trigger's run). No diversion is left behind.
 */
const UPDATE_INITRAMFS = '/usr/sbin/update-initramfs';
const INITRAMFS_CONF = '/etc/initramfs-tools/conf.d/kubedos.conf';
/** Hooks here run when update-initramfs builds an image (packages install theirs beside it). */
const INITRAMFS_HOOK = '/usr/share/initramfs-tools/hooks/kubedos-modules';
export const DEFER_INITRAMFS_HOOK =
  `chroot "$1" dpkg-divert --quiet --local --rename --divert ${UPDATE_INITRAMFS}.kubedos --add ${UPDATE_INITRAMFS}` +
  ` && printf '#!/bin/sh\\n# KubeDos build: the initramfs is made once, after the install\\nexit 0\\n' > "$1"${UPDATE_INITRAMFS}` +
  ` && chmod 755 "$1"${UPDATE_INITRAMFS}`;
/**
 * The hook that makes the initramfs, once, with MODULES=list: instead of Debian's MODULES=most,
 * whose every storage, network (NFS root) and filesystem driver made a 30 MB initrd that the
 * firmware read and the kernel unpacked on every boot, it carries `modules` and their
 * dependencies, copied by an initramfs-tools hook rather than listed in a modules file: listed
 * modules are loaded one by one on every boot, whereas copied ones are loaded by udev only when
 * the machine has their hardware. Both files stay in the image, so a later update-initramfs on a
 * node makes the same kind.
 */
export function makeInitramfsHook(modules: readonly string[]): string {
  const bad = modules.filter((m) => !MODULE_NAME.test(m));
  if (bad.length > 0) throw new BuildFailedError(`not a kernel module name: ${bad.join(', ')}`);
  const hook = [
    '#!/bin/sh',
    '# KubeDos: the early-boot modules of every output format (src/foundry/formats/early-boot.ts).',
    'case "$1" in prereqs) exit 0 ;; esac',
    '. /usr/share/initramfs-tools/hook-functions',
    `manual_add_modules ${modules.join(' ')}`,
  ].join('\n');
  return (
    `rm -f "$1"${UPDATE_INITRAMFS} && chroot "$1" dpkg-divert --quiet --local --rename --remove ${UPDATE_INITRAMFS}` +
    ` && rm -f "$1"/var/lib/dpkg/diversions-old` +
    // No initramfs-tools in the plan: nothing to make (the layer check then names what is missing).
    ` && if [ -x "$1"${UPDATE_INITRAMFS} ]; then` +
    ` printf '# KubeDos: only what %s copies\\nMODULES=list\\n' ${INITRAMFS_HOOK} > "$1"${INITRAMFS_CONF}` +
    ` && printf '%s\\n' '${hook}' > "$1"${INITRAMFS_HOOK} && chmod 755 "$1"${INITRAMFS_HOOK}` +
    ` && chroot "$1" update-initramfs -c -k all; fi`
  );
}

/** apt option of the build: never drop privileges to _apt (see buildRootfsLayer). */
const APT_NO_SANDBOX = 'APT::Sandbox::User "root"';

/** File name of the build-time sources (the local repository of the lock). */
const LOCAL_REPO_SOURCES = 'kubedos-lock.list';

/**
 * Kind tag of layer digests; bumped whenever the same lock would install a different tree
 * (v2: every layer installed from its lock's local repository; v3: apt never sandboxed during
 * the build, download directories normalised; v4: the initramfs made once, after every package;
 * v5: the initramfs is MODULES=list of the modules the digest names).
 */
export const LAYER_KIND = 'kubedos.layer/v5';

/** The modules of a plan's initramfs: what the formats' machines need, and the plan's own. */
export function layerInitramfsModules(plan: Pick<BuildPlan, 'initramfsModules'>): string[] {
  return initramfsModules(plan.initramfsModules);
}

export function layerDigest(plan: Pick<BuildPlan, 'base' | 'sourceDateEpoch' | 'initramfsModules' | 'sharedPackages'>, lockDigestHex: string): string {
  // An image installed on top of its platform's shared layer has a tree of its own kind.
  const shared = plan.sharedPackages ? { shared: [...plan.sharedPackages].sort() } : {};
  return sha256Hex(canonicalJson({ kind: LAYER_KIND, base: baseDigest(plan), lock: lockDigestHex, initramfs: layerInitramfsModules(plan), ...shared }));
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

/** Staging trees of layers being installed: `<layers>/.staging-<pid>-<random>`. */
const STAGING_PREFIX = '.staging-';

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

/**
 * Step: find the cached layer of the build's lock (resolved or given, see resolve.ts), or
 * install it from the lock (and publish it).
 */
export async function prepareRootfs(ctx: BuildContext): Promise<void> {
  const lock = ctx.lock!;
  const digest = layerDigest(ctx.plan, lockDigest(lock));
  const cached = await readLayer(path.join(layersDir(ctx), digest));
  if (cached) {
    ctx.log.info({ layer: digest.slice(0, 16) }, 'rootfs layer cache hit');
    ctx.layer = cached;
    return;
  }
  await buildRootfsLayer(ctx, lock);
}

/**
 * The local flat repository (copy://) of a lock: hard links (or copies) of the locked .debs from
 * the content-addressed cache, fetching any that is missing, indexed as dpkg-scanpackages does
 * (deb-index.ts).
 */
async function writeLocalRepo(ctx: BuildContext, lock: Lock, repo: string): Promise<Paragraph[]> {
  const cache = new DebCache(ctx.options.debCacheDir);
  await fs.mkdir(repo, { recursive: true });
  for (const pkg of lock.packages) {
    const cached = await cache.ensure(pkg, ctx.plan.base, ctx.options.signal);
    const dest = path.join(repo, debFileName(pkg.name, pkg.version, pkg.architecture));
    await fs.link(cached, dest).catch(() => fs.copyFile(cached, dest));
  }
  // What dpkg-scanpackages would print for this directory, from the stanzas cached with the .debs.
  const stdout = await packagesIndex(cache, lock.packages, ctx.options.signal);
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
  return parseDeb822(stdout);
}

/**
 * Packages apt would have marked automatically installed had it resolved the base itself: all but
 * the plan's packages, apt, and the Essential:yes and Priority:required sets that mmdebstrap's
 * minbase selects. Every locked package is named on the command line (so the installed set is
 * exactly the lock); marking these afterwards keeps `apt autoremove` meaningful on a node.
 */
export function autoInstalled(index: readonly Paragraph[], requested: readonly string[]): string[] {
  const manual = new Set([...requested, 'apt']);
  return index
    .filter((p) => p.Package && !manual.has(p.Package) && p.Essential !== 'yes' && p.Priority !== 'required')
    .map((p) => p.Package!)
    .sort();
}

/** What every mmdebstrap run of a layer shares: the local repository, the path filters, apt's options. */
interface LayerInstall {
  target: string;
  variant: 'minbase' | 'custom';
  include: readonly string[];
  essentialHooks?: readonly string[];
  customizeHooks: readonly string[];
  skip?: readonly string[];
}

async function installLayer(ctx: BuildContext, buildSources: string, install: LayerInstall): Promise<void> {
  const { plan } = ctx;
  await mmdebstrap(
    {
      suite: plan.base.suite,
      target: install.target,
      sourcesFile: buildSources,
      variant: install.variant,
      mode: 'root',
      architecture: plan.base.architecture,
      include: install.include,
      dpkgOptions: DPKG_PATH_FILTERS,
      // mmdebstrap turns apt's privilege drop off only when _apt cannot read the target's path,
      // which would make the tree depend on the permissions of the cache directory's parents.
      aptOptions: [APT_NO_SANDBOX],
      essentialHooks: install.essentialHooks,
      customizeHooks: install.customizeHooks,
      skip: install.skip,
    },
    { sourceDateEpoch: plan.sourceDateEpoch, signal: ctx.options.signal, onOutput: (_s, chunk) => ctx.log.debug({ tool: 'mmdebstrap' }, chunk.trimEnd()) },
  );
  ctx.ranMmdebstrap = true;
}

const pinned = (packages: readonly LockedPackage[]) => packages.map((p) => `${p.name}=${p.version}`);

/**
 * Install the layer of a lock: mmdebstrap from the local repository of exactly the locked .debs
 * (offline, whatever the mirror holds now), every package named with its version. An image with
 * packages of its own over its platform's is installed on a copy of the platform's shared layer
 * (shared-layer.ts), its own packages on top; any other in one pass. Either way the same lock
 * always gives the same tree.
 */
async function buildRootfsLayer(ctx: BuildContext, lock: Lock): Promise<void> {
  const { plan } = ctx;
  await fs.mkdir(layersDir(ctx), { recursive: true });
  // A build killed mid-install left its tree, with mmdebstrap's mounts still in it.
  for (const gone of await sweepStaleStaging(layersDir(ctx), STAGING_PREFIX, { signal: ctx.options.signal })) ctx.log.info({ staging: gone }, 'removed the staging tree of a build that is gone');
  const staging = path.join(layersDir(ctx), `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  const rootfs = path.join(staging, 'rootfs');
  await fs.mkdir(staging, { recursive: true });
  const imageSources = path.join(ctx.workDir, 'sources.list');
  await fs.writeFile(imageSources, sourcesList(plan.base));
  const repo = path.join(ctx.workDir, 'repo');
  const index = await writeLocalRepo(ctx, lock, repo);
  const auto = autoInstalled(index, plan.base.packages);
  // mmdebstrap writes the sources given as a file to /etc/apt/sources.list.d/0000<file name>.
  const buildSources = path.join(ctx.workDir, LOCAL_REPO_SOURCES);
  await fs.writeFile(buildSources, `deb [trusted=yes] copy://${repo} ./\n`);
  const finish = [
    makeInitramfsHook(layerInitramfsModules(plan)),
    ...(auto.length > 0 ? [`chroot "$1" apt-mark auto -qq ${auto.join(' ')}`] : []),
    // The image's sources are the real archives, not the local repository it was installed from.
    `rm -f "$1"/etc/apt/sources.list.d/0000${LOCAL_REPO_SOURCES}`,
    `upload ${imageSources} /etc/apt/sources.list`,
    SEAL_HOOK,
  ];
  try {
    const subset = plan.sharedPackages ? sharedSubset(lock.packages, index, plan.sharedPackages) : undefined;
    if (plan.sharedPackages && !subset) ctx.log.warn({ image: plan.image.name }, 'the lock holds no dependency closure of the platform\'s packages: installed in one pass, without the shared layer');
    const own = subset ? lock.packages.filter((p) => !subset.includes(p)) : [];
    if (subset && own.length > 0) {
      const shared = await sharedLayer(ctx, { ...lock, packages: subset });
      await copyTree(ctx, shared, rootfs);
      // The custom variant installs only what it is given, with dpkg, on the tree already there
      // (whose update-initramfs is still diverted: the initramfs is made once, by `finish`).
      await installLayer(ctx, buildSources, { target: rootfs, variant: 'custom', include: pinned(own), skip: ['check/empty'], customizeHooks: finish });
      ctx.log.info({ own: own.length, shared: subset.length }, 'installed on the shared layer');
    } else {
      await installLayer(ctx, buildSources, { target: rootfs, variant: 'minbase', include: pinned(lock.packages), essentialHooks: [DEFER_INITRAMFS_HOOK], customizeHooks: finish });
    }
    await normaliseAptState(rootfs);
    await checkInstalledMatchesLock(rootfs, lock);
    await checkNoAptLeftovers(rootfs);
    const digest = layerDigest(plan, lockDigest(lock));
    await clampMtimes(rootfs, plan.sourceDateEpoch);
    const boot = await fs.readdir(path.join(rootfs, 'boot'));
    const kernels = boot.filter((f) => f.startsWith('vmlinuz-')).sort();
    const initrds = boot.filter((f) => f.startsWith('initrd.img-')).sort();
    if (kernels.length !== 1 || initrds.length !== 1) {
      throw new BuildFailedError(`the rootfs must hold exactly one kernel and one initrd in /boot (found ${kernels.join(', ') || 'no kernel'}; ${initrds.join(', ') || 'no initrd'})`, 'include linux-image-amd64 and initramfs-tools in base.packages');
    }
    await fs.writeFile(
      path.join(staging, 'layer.json'),
      `${JSON.stringify({ digest, baseDigest: baseDigest(plan), lockDigest: lockDigest(lock), kernel: `boot/${kernels[0]}`, initrd: `boot/${initrds[0]}` }, null, 2)}\n`,
    );
    const final = path.join(layersDir(ctx), digest);
    try {
      await fs.rename(staging, final);
    } catch {
      ctx.log.info({ layer: digest.slice(0, 16) }, 'layer was published concurrently; keeping the existing one');
    }
    ctx.layer = await readLayer(final);
  } finally {
    // Cancelled mid-install, mmdebstrap had no time to unmount what it mounted in the tree.
    await removeScratchTree(staging);
    await fs.rm(repo, { recursive: true, force: true });
  }
}

/** Shared layers being installed by this process, by cache path: the images of a platform build at once. */
const sharedInstalls = new Map<string, Promise<void>>();

/**
 * The shared layer of `subset` (a part of this image's lock): its rootfs, from the cache or
 * installed now (minbase, the initramfs still deferred, nothing sealed: images finish on top).
 * Returns the path of its cached tree, which is never modified.
 */
async function sharedLayer(ctx: BuildContext, subset: Lock): Promise<string> {
  const digest = sharedLayerDigest(subset.packages, ctx.plan.sourceDateEpoch, subset.suite);
  const final = path.join(layersDir(ctx), `shared-${digest}`);
  const rootfs = path.join(final, 'rootfs');
  const cached = await fs.stat(path.join(final, 'layer.json')).then(() => true, () => false);
  if (cached) {
    ctx.log.info({ shared: digest.slice(0, 16) }, 'shared layer cache hit');
    return rootfs;
  }
  const pending = sharedInstalls.get(final);
  if (pending) {
    ctx.log.info({ shared: digest.slice(0, 16) }, 'waiting for the shared layer another build of this host installs');
    // That build may be cancelled or fail on its own account: then this one installs it.
    return pending.then(() => rootfs, () => sharedLayer(ctx, subset));
  }
  const done = installSharedLayer(ctx, subset, digest, final).finally(() => sharedInstalls.delete(final));
  sharedInstalls.set(final, done);
  await done;
  return rootfs;
}

async function installSharedLayer(ctx: BuildContext, subset: Lock, digest: string, final: string): Promise<void> {
  const staging = path.join(layersDir(ctx), `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  const dir = path.join(ctx.workDir, 'shared');
  const repo = path.join(dir, 'repo');
  try {
    // Its own repository of exactly its packages: what else the image's lock holds cannot change it.
    await fs.mkdir(staging, { recursive: true });
    await writeLocalRepo(ctx, subset, repo);
    const sources = path.join(dir, LOCAL_REPO_SOURCES);
    await fs.writeFile(sources, `deb [trusted=yes] copy://${repo} ./\n`);
    await installLayer(ctx, sources, {
      target: path.join(staging, 'rootfs'),
      variant: 'minbase',
      include: pinned(subset.packages),
      essentialHooks: [DEFER_INITRAMFS_HOOK],
      customizeHooks: [`rm -f "$1"/etc/apt/sources.list.d/0000${LOCAL_REPO_SOURCES}`],
    });
    await checkInstalledMatchesLock(path.join(staging, 'rootfs'), subset);
    await fs.writeFile(path.join(staging, 'layer.json'), `${JSON.stringify({ kind: SHARED_LAYER_KIND, digest, packages: subset.packages.length }, null, 2)}\n`);
    await fs.rename(staging, final).catch(() => ctx.log.info({ shared: digest.slice(0, 16) }, 'shared layer was published concurrently; keeping the existing one'));
    ctx.log.info({ shared: digest.slice(0, 16), packages: subset.packages.length }, 'shared layer installed');
  } finally {
    await removeScratchTree(staging);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * A copy of a shared layer's tree to install an image on (ownership, modes, times, hard links
 * and extended attributes kept), without its device nodes: mmdebstrap makes /dev's nodes itself
 * and refuses to find them there.
 */
async function copyTree(ctx: BuildContext, from: string, to: string): Promise<void> {
  await cpTree(from, to, { signal: ctx.options.signal });
  const dev = path.join(to, 'dev');
  for (const entry of await fs.readdir(dev)) await fs.rm(path.join(dev, entry), { recursive: true, force: true });
}

/**
 * After mmdebstrap (its cleanup runs apt after the customize hooks): drop the build-only apt
 * option and give apt's download directories the ownership apt itself gives them on a node.
 */
async function normaliseAptState(rootfs: string): Promise<void> {
  await fs.rm(path.join(rootfs, 'etc/apt/apt.conf.d/99mmdebstrap'), { force: true });
  const passwd = await fs.readFile(path.join(rootfs, 'etc/passwd'), 'utf8');
  const aptUser = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === '_apt');
  if (!aptUser) throw new BuildFailedError('the rootfs has no _apt user (is apt installed?)');
  for (const dir of ['var/cache/apt/archives/partial', 'var/lib/apt/lists/partial']) {
    const p = path.join(rootfs, dir);
    await fs.mkdir(p, { recursive: true });
    await fs.chown(p, Number(aptUser[2]), 0);
    await fs.chmod(p, 0o700);
  }
}

/** The image must not carry the build's apt state: no indexes, no .debs, no extra sources. */
async function checkNoAptLeftovers(rootfs: string): Promise<void> {
  const leftovers: string[] = [];
  const list = async (rel: string, keep: (name: string) => boolean) => {
    const names = await fs.readdir(path.join(rootfs, rel)).catch(() => [] as string[]);
    for (const n of names) if (!keep(n)) leftovers.push(`/${rel}/${n}`);
  };
  await list('var/lib/apt/lists', (n) => n === 'lock' || n === 'partial');
  await list('var/cache/apt/archives', (n) => n === 'lock' || n === 'partial');
  await list('var/cache/apt', (n) => n === 'archives');
  await list('etc/apt/sources.list.d', () => false);
  if (leftovers.length > 0) throw new BuildFailedError(`the rootfs still holds build-time apt state: ${leftovers.join(', ')}`);
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
