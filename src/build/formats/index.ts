/**
 * The output-format registry: one table, one entry per format. CLI choices and help are
 * generated from it; a new format is one file and one line here.
 */
import { BuildPlanError } from '../../errors';
import type { FormatName } from '../plan';
import type { OutputFormat } from './format';
import { ova } from './ova';
import { qcow2 } from './qcow2';
import { raw } from './raw';
import { vmdk } from './vmdk';

export type { OutputFormat } from './format';

export const OUTPUT_FORMATS: Readonly<Record<FormatName, OutputFormat>> = { raw, qcow2, vmdk, ova };

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
  return Object.values(OUTPUT_FORMATS).map((f) => `${f.name.padEnd(6)} ${f.description}`).join('\n');
}
