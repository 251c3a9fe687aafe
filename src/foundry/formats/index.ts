/**
 * The output-format registry: one table, one entry per format. CLI choices and help are
 * generated from it; a new format is one file and one line here.
 */
import { BuildPlanError } from '../../errors';
import type { FormatName } from '../plan';
import { ami } from './ami';
import { azure } from './azure';
import { firecracker } from './firecracker';
import type { OutputFormat } from './format';
import { gce } from './gce';
import { installerMedia } from './installer-media';
import { iso } from './iso';
import { ova } from './ova';
import { pxe } from './pxe';
import { qcow2 } from './qcow2';
import { raw } from './raw';
import { vmdk } from './vmdk';

export type { OutputFormat } from './format';

export const OUTPUT_FORMATS: Readonly<Record<FormatName, OutputFormat>> = { raw, qcow2, vmdk, ova, firecracker, ami, azure, gce, iso, 'installer-media': installerMedia, pxe };

/** Look up requested formats, rejecting unknown names before any work starts. */
export function resolveFormats(names: readonly string[]): OutputFormat[] {
  const unknown = names.filter((n) => !(n in OUTPUT_FORMATS));
  if (unknown.length > 0) {
    throw new BuildPlanError(unknown.map((n) => `unknown output format "${n}" (known: ${Object.keys(OUTPUT_FORMATS).join(', ')})`));
  }
  return [...new Set(names)].map((n) => OUTPUT_FORMATS[n as FormatName]);
}

/** `name  description` lines for help text. */
export function describeFormats(): string {
  const width = Math.max(...Object.keys(OUTPUT_FORMATS).map((n) => n.length));
  return Object.values(OUTPUT_FORMATS).map((f) => `${f.name.padEnd(width)} ${f.description}`).join('\n');
}
