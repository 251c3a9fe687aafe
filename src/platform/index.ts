/**
 * The platform spec: load and validate `kubedos.yaml`, its types, its digest and its JSON Schema.
 * Workflow code must import `./types` or `./catalog` directly (type-only / pure), not this barrel,
 * which pulls in node:fs and node:crypto.
 */
export * from './catalog';
export * from './plugins';
export * from './types';
export { parseSpec, loadSpec, SPEC_FILE_NAME, type ParseSpecOptions } from './load';
export { specDigest } from './digest';
export { canonicalJson, canonicalSha256 } from './canonical';
export { specJsonSchema, SPEC_SCHEMA_ID } from './json-schema';
export { formatSpecError } from './format';
export { specSchema, schemas } from './schema';
export { parseDuration, parseSize, formatSize } from './quantities';
