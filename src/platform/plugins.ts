/**
 * The spec's view of the plug-ins: output formats from the Foundry's format registry and target
 * types from the target registry, as catalog entries for the schema, help and the JSON Schema.
 * Nothing about a format or a target type is written here; it all comes from their descriptors.
 */
import { FORMAT_NAMES, OUTPUT_FORMATS as FORMAT_DESCRIPTORS, isFormatName, type FormatName } from '../foundry/formats';
import { TARGETS, deployedFormats, isTargetType, type TargetType } from '../targets';
import type { CatalogEntry } from './catalog';

export type { FormatName, TargetType };
export { isFormatName, isTargetType };

/** Artifact formats the Foundry can manufacture from one image. */
export const OUTPUT_FORMATS: readonly (CatalogEntry & { readonly name: FormatName })[] = FORMAT_DESCRIPTORS.map((f) => ({ name: f.name, description: f.description }));

/** Formats accepted by a target type; `any` when the driver needs no bytes. */
export type AcceptedFormats = readonly FormatName[] | 'any';

/** Target types this build has drivers for, with the formats each deploys (preferred first). */
export const TARGET_TYPES: readonly (CatalogEntry & { readonly name: TargetType; readonly accepts: AcceptedFormats })[] = TARGETS.map((t) => ({
  name: t.type,
  description: t.description,
  accepts: t.accepts,
}));

/** Output formats of an image that does not list any. */
export const DEFAULT_OUTPUTS: readonly FormatName[] = ['qcow2'];

/** Formats a target type can deploy (`any` for drivers such as `hollow`); with a target's settings, what that target deploys. */
export function acceptedFormats(type: TargetType, settings?: Record<string, unknown>): AcceptedFormats {
  return deployedFormats(type, settings);
}

export { FORMAT_NAMES };
