/**
 * The adapter from the platform spec to the engine's BuildPlan, and the plan's wire form: the CLI
 * stores the serialized plan in the artifact store and workflows carry only its digest.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors';
import type { Spec } from '../platform/types';
import { FORMAT_NAMES, isFormatName, type FormatName } from './formats';
import type { BuildPlan, PlanFile } from './plan';

export interface PlanOptions {
  /** Formats to build; defaults to the image's `outputs` that the engine implements. */
  formats?: readonly string[];
  /** From the spec, else from kubedos.lock; never the clock. */
  sourceDateEpoch: number;
}


function selectFormats(imageName: string, outputs: readonly string[], requested?: readonly string[]): FormatName[] {
  const wanted = requested ?? outputs;
  const missing = wanted.filter((f) => !isFormatName(f));
  if (missing.length) {
    throw new ConfigError(
      `images.${imageName}: unknown format${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
      `the Foundry builds ${FORMAT_NAMES.join(', ')}; ${requested ? 'pass --format with those' : 'list those in outputs'}`,
    );
  }
  if (!wanted.length) throw new ConfigError(`images.${imageName}: no output format to build`, `add one of ${FORMAT_NAMES.join(', ')} to outputs`);
  return [...new Set(wanted)] as FormatName[];
}

function payloadFile(imageName: string, f: Spec['images'][string]['files'][number]): PlanFile {
  let content: Buffer | string;
  if (f.source !== undefined) {
    const bytes = readFileSync(f.source);
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (f.sourceSha256 && sha !== f.sourceSha256) {
      throw new ConfigError(`images.${imageName}.files ${f.path}: ${f.source} changed while the spec was being processed`, 'run the command again');
    }
    content = bytes;
  } else {
    content = f.content ?? '';
  }
  return { path: f.path, content, mode: parseInt(f.mode, 8), owner: f.owner };
}

/** The BuildPlan of one image of a validated spec. */
export function planFromSpec(spec: Spec, imageName: string, options: PlanOptions): BuildPlan {
  const image = spec.images[imageName];
  if (!image) {
    throw new ConfigError(`no image named "${imageName}"`, `the spec defines ${Object.keys(spec.images).join(', ') || 'no images'}`);
  }
  const packages = [...new Set([...spec.base.packages, ...image.packages])];
  const ownPackages = image.packages.filter((p) => !spec.base.packages.includes(p));
  return {
    base: {
      suite: spec.base.suite,
      mirror: spec.base.mirror,
      securityMirror: spec.base.securityMirror,
      components: [...spec.base.components],
      packages,
      architecture: spec.base.architecture,
    },
    sourceDateEpoch: options.sourceDateEpoch,
    // An image with packages of its own is installed on top of the platform's shared layer.
    ...(ownPackages.length > 0 ? { sharedPackages: [...spec.base.packages] } : {}),
    ...(spec.base.initramfsModules.length > 0 ? { initramfsModules: [...spec.base.initramfsModules] } : {}),
    image: {
      name: imageName,
      role: image.role,
      hostname: image.hostnamePrefix,
      files: image.files.map((f) => payloadFile(imageName, f)),
      units: image.units.map((u) => ({ name: u.name, content: u.content, enable: u.enable })),
      firstBoot: image.firstBoot.map((s) => ({ name: s.name, script: s.script })),
      authorizedKeys: [...image.authorizedKeys],
      passwordLogin: image.passwordLogin,
      diskSizeBytes: image.disk.size,
      ...(image.installerIso ? { installerIso: { source: image.installerIso.source, sha256: image.installerIso.sha256 } } : {}),
    },
    formats: selectFormats(imageName, image.outputs, options.formats),
  };
}

/** JSON with Buffers as `{ "base64": … }` and sorted keys: stable bytes, so a stable digest. */
export function serializePlan(plan: BuildPlan): string {
  const sort = (v: unknown): unknown => {
    if (Buffer.isBuffer(v)) return { base64: v.toString('base64') };
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(plan));
}

export function parsePlan(text: string): BuildPlan {
  return JSON.parse(text, (_key, value) =>
    value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1 && typeof value.base64 === 'string'
      ? Buffer.from(value.base64, 'base64')
      : value,
  ) as BuildPlan;
}
