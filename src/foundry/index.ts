/** The manufacturing engine's public surface. */
export { buildImage, type BuildResult } from './pipeline';
export type { BuildOptions, Artifact } from './context';
export {
  baseDigest, canonicalJson, derivedUuid, imageInputs, inputDigest, sha256Hex, validatePlan,
  type BasePlan, type BuildPlan, type ImagePlan, type PlanFile, type PlanUnit,
} from './plan';
export {
  DebCache, lockDigest, lockInputsDigest, parseLock, serializeLock,
  type Lock, type LockedPackage, type PackageOrigin,
} from './lock';
export { resolveLock, type ResolveOptions } from './resolve';
export { LAYER_KIND, layerDigest, sourcesList } from './rootfs';
export { FORMAT_NAMES, OUTPUT_FORMATS, describeFormats, formatNamed, formatTools, isFormatName, resolveFormats, type FormatName, type OutputFormat } from './formats';
export { manifestFileName, type BuildManifest } from './manifest';
