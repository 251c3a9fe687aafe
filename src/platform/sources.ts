/**
 * Payload files given by `source`: checked to exist when the spec is read, then recorded by
 * absolute path and sha256, so the spec digest changes when a payload file's content does and not
 * when the checkout moves.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { z } from 'zod';
import type { Finding } from './issues';
import type { PayloadFile, specSchema } from './schema';
import { isRecord } from './show';
import { ASSEMBLED_INSTALLER_ISO } from '../foundry/installer-iso';

type ParsedSpec = z.output<typeof specSchema>;
type InstallerIsoSpec = NonNullable<ParsedSpec['images'][string]['installerIso']>;

function sourceProblem(source: string, baseDir: string): string | undefined {
  const absolute = resolve(baseDir, source);
  try {
    if (!statSync(absolute).isFile()) return `source ${absolute} is not a regular file`;
    return undefined;
  } catch {
    return `source file not found: ${absolute} (source paths are relative to the spec file's directory, ${baseDir})`;
  }
}

/** A finding for every `images.*.files[*].source` that does not name a readable regular file. */
export function sourceFindings(raw: unknown, baseDir: string): Finding[] {
  const images = isRecord(raw) && isRecord(raw.images) ? raw.images : {};
  return Object.entries(images).flatMap(([name, image]) => {
    const files = isRecord(image) && Array.isArray(image.files) ? image.files : [];
    return files.flatMap((file, index): Finding[] => {
      if (!isRecord(file) || typeof file.source !== 'string' || file.source === '') return [];
      const message = sourceProblem(file.source, baseDir);
      return message ? [{ path: ['images', name, 'files', index, 'source'], message }] : [];
    });
  });
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function resolveFile(file: PayloadFile, baseDir: string, digest: boolean): PayloadFile {
  if (file.source === undefined) return file;
  const source = resolve(baseDir, file.source);
  return digest ? { ...file, source, sourceSha256: sha256File(source) } : { ...file, source };
}

/**
 * An installer ISO given by path is made absolute like payload sources; URLs and the assembled
 * media keyword stay. Not checked here: only a build of installer-media reads it (by sha256).
 */
function resolveInstallerIso(iso: InstallerIsoSpec | undefined, baseDir: string): InstallerIsoSpec | undefined {
  if (!iso || iso.source === ASSEMBLED_INSTALLER_ISO || /^https?:\/\//.test(iso.source)) return iso;
  return { ...iso, source: resolve(baseDir, iso.source) };
}

/** The spec with every `source` made absolute and, when `digest` is set, its content hashed. */
export function resolveSources(spec: ParsedSpec, baseDir: string, digest: boolean): ParsedSpec {
  const images = Object.fromEntries(
    Object.entries(spec.images).map(([name, image]) => {
      const installerIso = resolveInstallerIso(image.installerIso, baseDir);
      return [name, { ...image, files: image.files.map((f) => resolveFile(f, baseDir, digest)), ...(installerIso ? { installerIso } : {}) }];
    }),
  );
  return { ...spec, images };
}
