/**
 * One built image per test run, shared by every test file: built into a directory keyed by the
 * plan's digest under $KUBEDOS_TEST_IMAGES (default: <tmpdir>/kubedos-test-images), reused when
 * its manifest is already there. Caches (layers, ext4 bases, .debs) are shared too, so a later
 * run or another test file pays only for what changed. Concurrent callers (jest workers)
 * serialise on a lock directory.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildImage, canonicalJson, inputDigest, LAYER_KIND, manifestFileName, parseLock, sha256Hex, type BuildManifest, type BuildPlan, type BuildResult, type Lock } from '../../src/foundry';
import { kernelCmdline } from '../../src/foundry/boot';
import { renderPayload } from '../../src/foundry/payload';

export function testImagesRoot(): string {
  return process.env.KUBEDOS_TEST_IMAGES || path.join(os.tmpdir(), 'kubedos-test-images');
}

/**
 * A small but complete node: kernel, systemd, sshd; and open-vm-tools, as images meant for vSphere
 * carry (its OVA is what the vsphere tests import; vmtoolsd does not start outside VMware).
 */
export const TEST_PLAN: BuildPlan = {
  base: {
    suite: 'bookworm',
    mirror: 'http://deb.debian.org/debian',
    securityMirror: 'http://deb.debian.org/debian-security',
    components: ['main'],
    packages: ['linux-image-amd64', 'systemd-sysv', 'udev', 'openssh-server', 'dbus', 'initramfs-tools', 'zstd', 'iproute2', 'ca-certificates', 'open-vm-tools'],
    architecture: 'amd64',
  },
  sourceDateEpoch: 1700000000,
  image: {
    name: 'kubedos-test',
    role: 'worker',
    hostname: 'kubedos-test-0',
    files: [{ path: '/etc/kubedos/role', content: 'worker\n', mode: 0o644, owner: 'root:root' }],
    units: [
      {
        name: 'kubedos-hello.service',
        content: '[Unit]\nDescription=hello\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n',
        enable: true,
      },
    ],
    firstBoot: [{ name: 'hello', script: '#!/bin/sh\necho "kubedos: hello from first boot"\n' }],
    authorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d kubedos-test'],
    passwordLogin: false,
    diskSizeBytes: 2 * 1024 * 1024 * 1024,
  },
  formats: ['raw', 'qcow2', 'vmdk', 'ova', 'firecracker', 'ami', 'azure', 'gce', 'iso', 'pxe'],
};

export interface BuiltImage {
  dir: string;
  manifest: BuildManifest;
  lock: Lock;
  /** Artifact path by format: its first artifact (a bundle's entry point, e.g. the Firecracker config). */
  artifacts: Record<string, string>;
  cacheDir: string;
  debCacheDir: string;
  /** Present when this call built the image (absent when it was reused). */
  result?: BuildResult;
}

/**
 * Directory key of a plan's image; includes the layer kind, the kernel command line and the rendered
 * payload (first-boot units, readers), so neither an engine change nor a payload change is ever reused stale.
 */
export function planKey(plan: BuildPlan): string {
  const payload = renderPayload(plan, { inputDigest: '0'.repeat(64), rootFsUuid: '00000000-0000-0000-0000-000000000000' }).map((e) =>
    e.kind === 'file' ? { ...e, content: sha256Hex(e.content) } : e,
  );
  // The input digest's own rules (what seeds the disk's identifiers) are part of the engine too.
  return sha256Hex(canonicalJson({ plan, layerKind: LAYER_KIND, kernelCmdline: kernelCmdline(''), payload: sha256Hex(canonicalJson(payload)), inputs: inputDigest(plan, '0'.repeat(64)) })).slice(0, 16);
}

/** Shared caches of the test image root. */
export function sharedCaches(): { cacheDir: string; debCacheDir: string } {
  return { cacheDir: path.join(testImagesRoot(), 'cache'), debCacheDir: path.join(testImagesRoot(), 'debs') };
}

async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60 * 60 * 1000;
  for (;;) {
    try {
      await fs.mkdir(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fs.stat(lockDir).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 45 * 60 * 1000) await fs.rm(lockDir, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockDir}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lockDir, { recursive: true, force: true });
  }
}

async function readBuilt(dir: string, plan: BuildPlan): Promise<BuiltImage | undefined> {
  try {
    const manifest = JSON.parse(await fs.readFile(path.join(dir, manifestFileName(plan.image.name)), 'utf8')) as BuildManifest;
    const lock = parseLock(await fs.readFile(path.join(dir, 'kubedos.lock'), 'utf8'));
    const artifacts: Record<string, string> = {};
    for (const a of manifest.artifacts) artifacts[a.format] ??= path.join(dir, a.file);
    return { dir, manifest, lock, artifacts, ...sharedCaches() };
  } catch {
    return undefined;
  }
}

/** The image of `plan`, built once and reused (lock from a previous build of the same base is reused). */
export async function builtImage(plan: BuildPlan = TEST_PLAN): Promise<BuiltImage> {
  const root = testImagesRoot();
  await fs.mkdir(root, { recursive: true });
  const dir = path.join(root, 'images', planKey(plan));
  return withLock(path.join(root, '.lock'), async () => {
    const existing = await readBuilt(dir, plan);
    if (existing) return existing;
    const caches = sharedCaches();
    const lockFile = path.join(root, `base-${sha256Hex(canonicalJson(plan.base)).slice(0, 16)}.lock`);
    const lock = await fs.readFile(lockFile, 'utf8').then((t) => parseLock(t), () => undefined);
    const result = await buildImage(plan, { ...caches, outputDir: dir, lock });
    await fs.writeFile(lockFile, await fs.readFile(path.join(dir, 'kubedos.lock')));
    const built = (await readBuilt(dir, plan))!;
    return { ...built, result };
  });
}
