/**
 * The manufacturing engine's input: a plain, decoupled description of one image. The platform
 * spec (src/platform) is mapped onto this by a separate adapter; nothing here knows the spec file.
 * Digests are computed over canonical JSON so that key order never changes a cache key.
 */
import { createHash } from 'node:crypto';
import type { FormatName } from './formats';
import { ASSEMBLED_INSTALLER_ISO } from './installer-iso';

/** The package base of an image: what mmdebstrap installs. */
export interface BasePlan {
  /** Debian suite codename, e.g. `bookworm`. */
  suite: string;
  /** Archive mirror URL, e.g. `http://deb.debian.org/debian`. */
  mirror: string;
  /** Security archive URL. @default mirror with `/debian` replaced by `/debian-security` */
  securityMirror?: string;
  /** Archive components. e.g. `['main']` */
  components: string[];
  /** Packages installed on top of the minbase variant. */
  packages: string[];
  architecture: 'amd64';
}

/** A regular file placed into the image. */
export interface PlanFile {
  /** Absolute path inside the image. */
  path: string;
  content: Buffer | string;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  /** `user:group` (names resolved against the image's /etc/passwd and /etc/group) or `uid:gid`. */
  owner: string;
}

/** A systemd unit installed into /etc/systemd/system. */
export interface PlanUnit {
  /** Unit file name, e.g. `node-exporter.service`. */
  name: string;
  content: string;
  /** Enabled through symlinks in the `WantedBy=` targets' .wants directories. */
  enable: boolean;
}

export interface ImagePlan {
  name: string;
  role: string;
  hostname: string;
  files: PlanFile[];
  units: PlanUnit[];
  /** Scripts run once, in order, at first boot by kubedos-firstboot.service (before sshd). */
  firstBoot: { name: string; script: string }[];
  /** Public keys allowed to log in as root. */
  authorizedKeys: string[];
  /** When false (the default stance) sshd refuses passwords. */
  passwordLogin: boolean;
  /** Size of the whole disk (GPT, ESP, root) in bytes. */
  diskSizeBytes: number;
  /** The Debian installer ISO the `installer-media` format repacks (checked against sha256 before use). */
  installerIso?: InstallerIso;
}

/**
 * An installer ISO named by absolute path, http(s) URL or `debian-mini` (assembled on the build
 * host), with its sha256 (hex). Only the sha256 enters the input digest: where the ISO lives does
 * not change what is built.
 */
export interface InstallerIso {
  source: string;
  sha256: string;
}


/** Everything needed to manufacture one image, bit-identically. */
export interface BuildPlan {
  base: BasePlan;
  /** Every timestamp in the image; never the clock. */
  sourceDateEpoch: number;
  image: ImagePlan;
  formats: FormatName[];
  /**
   * The platform's own packages (its base, defaults included) when this image adds packages of
   * its own: the image's layer is then the platform's shared layer of these (shared-layer.ts),
   * installed once for every image of the platform, with the image's packages installed on top.
   * `base.packages` still lists every package the image has; its lock is the image's own.
   */
  sharedPackages?: string[];
  /**
   * Kernel modules the initramfs carries beyond what the formats' machines need (hardware no
   * format names: a rare RAID controller, say); part of the layer's digest, not of the lock's.
   */
  initramfsModules?: string[];
}

/** JSON with sorted object keys and Buffers as `{ base64 }`: the form every digest is taken over. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalise(value));
}

function normalise(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { base64: value.toString('base64') };
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = normalise(v);
    }
    return out;
  }
  return value;
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The security archive for a base, explicit or derived from the mirror. */
export function securityMirrorOf(base: Pick<BasePlan, 'mirror' | 'securityMirror'>): string {
  if (base.securityMirror) return base.securityMirror.replace(/\/+$/, '');
  const mirror = base.mirror.replace(/\/+$/, '');
  return mirror.endsWith('/debian') ? `${mirror}-security` : `${mirror.replace(/\/[^/]*$/, '')}/debian-security`;
}

/** Digest of what determines the package base (not the payload). */
export function baseDigest(plan: Pick<BuildPlan, 'base' | 'sourceDateEpoch'>): string {
  const base = { ...plan.base, packages: [...plan.base.packages].sort(), securityMirror: securityMirrorOf(plan.base) };
  return sha256Hex(canonicalJson({ kind: 'kubedos.base/v1', base, sourceDateEpoch: plan.sourceDateEpoch }));
}

/**
 * Digest of the image's own inputs — base, lock, epoch, payload, disk settings — which names the
 * image and seeds every identifier on its disks. Which formats are built, in which order, and a
 * format's own options (the installer ISO that installer-media repacks) are not part of it: each
 * artifact's bytes are the same whatever was built beside it, so an auditor can rebuild one format
 * alone, and `up` (qcow2 only) deploys what `build` publishes.
 */
export function inputDigest(plan: BuildPlan, lockDigest: string): string {
  return sha256Hex(canonicalJson({ kind: 'kubedos.image-inputs/v2', image: imageInputs(plan), lockDigest }));
}

/** What is hashed of a plan for its image: all of it but the format list and the formats' own options. */
export function imageInputs(plan: BuildPlan): Record<string, unknown> {
  const { formats: _formats, ...rest } = plan;
  const { installerIso: _installerIso, ...image } = plan.image;
  return { ...rest, image };
}

/**
 * A deterministic RFC 4122 (version 4 layout) UUID derived from a digest and a purpose label,
 * so that every UUID on the disk is stable for a given input and distinct per purpose.
 */
export function derivedUuid(digest: string, purpose: string): string {
  const h = Buffer.from(sha256Hex(`${digest}:${purpose}`).slice(0, 32), 'hex');
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** Reject plans that cannot be built, before any work starts. */
export function validatePlan(plan: BuildPlan): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(plan.sourceDateEpoch) || plan.sourceDateEpoch <= 0) problems.push('sourceDateEpoch must be a positive integer');
  if (plan.base.architecture !== 'amd64') problems.push('base.architecture must be amd64');
  if (!/^[a-z0-9-]+$/.test(plan.base.suite)) problems.push('base.suite must be a suite codename');
  // Package names reach apt-get and mmdebstrap as arguments: Debian package names only.
  for (const p of plan.base.packages) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(p)) problems.push(`base.packages: "${p}" is not a Debian package name`);
  for (const p of plan.sharedPackages ?? []) if (!plan.base.packages.includes(p)) problems.push(`sharedPackages: "${p}" is not among base.packages (the shared layer holds only packages the image has)`);
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(plan.image.hostname)) problems.push('image.hostname is not a valid host name');
  if (!/^[A-Za-z0-9._-]+$/.test(plan.image.name)) problems.push('image.name may contain only letters, digits, ".", "_" and "-"');
  if (plan.image.diskSizeBytes < 1024 * 1024 * 1024 || plan.image.diskSizeBytes % (1024 * 1024) !== 0) {
    problems.push('image.diskSizeBytes must be a whole number of MiB and at least 1 GiB');
  }
  for (const f of plan.image.files) {
    if (!f.path.startsWith('/') || f.path.split('/').some((c) => c === '..' || c === '.')) problems.push(`file ${f.path}: path must be absolute and normalised`);
    if (!/^[^:\s]+:[^:\s]+$/.test(f.owner)) problems.push(`file ${f.path}: owner must be user:group`);
  }
  for (const u of plan.image.units) if (!/^[A-Za-z0-9@._-]+\.(service|timer|socket|target|path|mount)$/.test(u.name)) problems.push(`unit ${u.name}: not a unit file name`);
  for (const s of plan.image.firstBoot) if (!/^[A-Za-z0-9._-]+$/.test(s.name)) problems.push(`firstBoot ${s.name}: not a file name`);
  if (plan.formats.length === 0) problems.push('formats must name at least one output format');
  const iso = plan.image.installerIso;
  if (plan.formats.includes('installer-media') && !iso) problems.push('installer-media needs image.installerIso: the Debian installer ISO to repack (absolute path or http(s) URL) and its sha256');
  if (iso && !/^(\/|https?:\/\/)/.test(iso.source) && iso.source !== ASSEMBLED_INSTALLER_ISO) {
    problems.push(`image.installerIso.source "${iso.source}" must be an absolute path, an http(s) URL or "${ASSEMBLED_INSTALLER_ISO}"`);
  }
  if (iso && !/^[0-9a-f]{64}$/.test(iso.sha256)) problems.push('image.installerIso.sha256 must be 64 lowercase hex digits');
  if (plan.formats.includes('gce') && plan.image.diskSizeBytes % (1024 * 1024 * 1024) !== 0) problems.push('image.diskSizeBytes must be a whole number of GiB for gce (Compute Engine requires it of disk.raw)');
  return problems;
}
