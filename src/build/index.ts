/** The manufacturing engine's public surface. */
export { buildImage, type BuildResult } from './pipeline';
export type { BuildOptions, Artifact } from './context';
export {
  FORMAT_NAMES, baseDigest, canonicalJson, derivedUuid, inputDigest, sha256Hex, validatePlan,
  type BasePlan, type BuildPlan, type FormatName, type ImagePlan, type PlanFile, type PlanUnit,
} from './plan';
export {
  DebCache, lockDigest, lockInputsDigest, parseLock, resolveLock, serializeLock,
  type Lock, type LockedPackage, type PackageOrigin, type ResolvedTree,
} from './lock';
export { layerDigest, sourcesList } from './rootfs';
export { OUTPUT_FORMATS, describeFormats, resolveFormats, type OutputFormat } from './formats';
export { manifestFileName, type BuildManifest } from './manifest';
