/** The spec digest: a stable cache key for "this exact platform definition". */
import { canonicalSha256 } from './canonical';
import type { Spec } from './types';

/**
 * Payload files loaded from disk are identified by their content hash, not by their absolute
 * path, so the same spec checked out in two places has one digest and editing a payload file
 * changes it. (Specs parsed with `checkSources: false` carry no hash; their path stays in.)
 */
function digestView(spec: Spec): unknown {
  const images = Object.fromEntries(
    Object.entries(spec.images).map(([name, image]) => [
      name,
      { ...image, files: image.files.map((f) => (f.sourceSha256 === undefined ? f : { ...f, source: undefined })) },
    ]),
  );
  return { ...spec, images };
}

/** Hex sha256 (64 characters) of the canonical JSON of a parsed spec; independent of key order and checkout location. */
export function specDigest(spec: Spec): string {
  return canonicalSha256(digestView(spec));
}
