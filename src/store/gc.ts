/**
 * Garbage collection of the artifact store: mark every blob reachable from the kept refs and the
 * pins (`refs/pins/<name>`), sweep the rest.
 *
 * Reachability: a ref's target is kept; a kept blob that is a small JSON document (a publication
 * manifest, a build manifest, a recorded build result) keeps every stored digest it mentions; a
 * kept manifest keeps its signature (`refs/signatures/<manifest>`). Blobs younger than the grace
 * period are never removed: a publish in progress uploads blobs before the ref that names them.
 *
 * Cache refs (`caches`, e.g. `builds/` records and `scratch/` verification builds) are not roots:
 * one survives only while everything its target names is kept anyway; otherwise it is removed
 * with the blobs, so a superseded build does not live on through its cache record.
 */
import { StoreError } from '../errors';
import { logger } from '../log';
import { PIN_PREFIX, SIGNATURE_PREFIX, signatureRefOf, type ArtifactStore, type BlobInfo } from './store';

/** Blobs larger than this are never parsed for references (images are not manifests). */
const MAX_DOCUMENT = 16 * 1024 * 1024;
const DIGEST_IN_TEXT = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g;

export interface GcOptions {
  /**
   * Refs that are roots: exact names, or prefixes ending in `/` (`images/web/`). Refs not kept are
   * removed (pins never are). @default every ref
   */
  keep?: readonly string[];
  /**
   * Ref prefixes (ending in `/`) of caches: not roots; such a ref is kept only while every stored
   * blob its target mentions is kept by the roots (or is younger than the grace period), else it
   * is removed. @default none
   */
  caches?: readonly string[];
  /** Report what would go, remove nothing. @default false */
  dryRun?: boolean;
  /** Blobs written less than this long ago are kept. @default 3_600_000 (one hour) */
  minAgeMs?: number;
  signal?: AbortSignal;
}

export interface GcResult {
  dryRun: boolean;
  /** Blobs removed (or that would be). */
  removedBlobs: BlobInfo[];
  /** Refs removed (or that would be): refs not kept, signatures of removed manifests. */
  removedRefs: string[];
  keptBlobs: number;
  bytesFreed: number;
  /** Abandoned multipart uploads aborted (S3). */
  abortedUploads: number;
}

function isKept(ref: string, keep: readonly string[] | undefined): boolean {
  if (ref.startsWith(PIN_PREFIX)) return true;
  if (!keep) return true;
  return keep.some((k) => (k.endsWith('/') ? ref.startsWith(k) : ref === k));
}

export async function gc(store: ArtifactStore, options: GcOptions = {}): Promise<GcResult> {
  const dryRun = options.dryRun ?? false;
  const minAgeMs = options.minAgeMs ?? 3_600_000;
  const blobs = await store.listBlobs();
  const byDigest = new Map(blobs.map((b) => [b.sha256, b]));
  const refs = await store.listRefs();
  const signatureRefs = refs.filter((r) => r.startsWith(SIGNATURE_PREFIX));
  const rootRefs = refs.filter((r) => !r.startsWith(SIGNATURE_PREFIX));
  const caches = options.caches ?? [];
  const isCache = (r: string) => !r.startsWith(PIN_PREFIX) && caches.some((c) => r.startsWith(c));
  const cacheRefs = rootRefs.filter(isCache);
  const removedRefs = rootRefs.filter((r) => !isCache(r) && !isKept(r, options.keep));
  const kept = rootRefs.filter((r) => !isCache(r) && isKept(r, options.keep));
  const now = Date.now();
  const young = (digest: string) => now - byDigest.get(digest)!.modified.getTime() < minAgeMs;

  const signed = new Set(signatureRefs.map((r) => r.slice(SIGNATURE_PREFIX.length)));

  // Mark.
  const marked = new Set<string>();
  const queue: string[] = [];
  const mark = (digest: string) => {
    if (!marked.has(digest) && byDigest.has(digest)) {
      marked.add(digest);
      queue.push(digest);
    }
  };
  /** Stored digests a blob mentions (when it is a small JSON document). */
  const mentions = async (digest: string): Promise<string[]> => {
    const info = byDigest.get(digest)!;
    if (info.size > MAX_DOCUMENT) return [];
    let bytes: Buffer;
    try {
      bytes = await store.getBytes(digest);
    } catch (err) {
      logger.warn({ digest, err: String(err) }, 'gc: a kept blob could not be read; not following its references');
      return [];
    }
    const first = bytes.subarray(0, 64).toString('utf8').trimStart()[0];
    if (first !== '{' && first !== '[') return [];
    return [...bytes.toString('utf8').matchAll(DIGEST_IN_TEXT)].map((m) => m[0]).filter((d) => byDigest.has(d));
  };
  const drain = async () => {
    while (queue.length > 0) {
      if (options.signal?.aborted) throw new StoreError('gc was cancelled before it removed anything');
      const digest = queue.shift()!;
      if (signed.has(digest)) {
        const sig = await store.getRef(signatureRefOf(digest));
        if (sig) mark(sig);
      }
      for (const d of await mentions(digest)) mark(d);
    }
  };
  for (const r of kept) {
    const target = await store.getRef(r);
    if (target) mark(target);
  }
  await drain();

  // Caches: kept only when nothing they name is going away.
  for (const r of cacheRefs) {
    const target = await store.getRef(r);
    const survives =
      target !== undefined && byDigest.has(target) && (marked.has(target) || young(target) || (await mentions(target)).every((d) => marked.has(d) || young(d)));
    if (survives) mark(target!);
    else removedRefs.push(r);
  }
  await drain();

  // Sweep.
  const removedBlobs = blobs.filter((b) => !marked.has(b.sha256) && now - b.modified.getTime() >= minAgeMs);
  const removedSet = new Set(removedBlobs.map((b) => b.sha256));
  // Signatures of manifests that go (or are gone already).
  const orphanSignatures = signatureRefs.filter((r) => {
    const manifest = r.slice(SIGNATURE_PREFIX.length);
    return removedSet.has(manifest) || !byDigest.has(manifest);
  });
  const allRemovedRefs = [...removedRefs, ...orphanSignatures].sort();
  let abortedUploads = 0;
  if (!dryRun) {
    // Refs first: a ref never points at a removed blob, even if gc is interrupted.
    for (const r of allRemovedRefs) await store.deleteRef(r);
    for (const b of removedBlobs) await store.deleteBlob(b.sha256);
  }
  const withUploads = store as ArtifactStore & { abortStaleUploads?: (olderThanMs: number, dryRun?: boolean) => Promise<unknown[]> };
  if (typeof withUploads.abortStaleUploads === 'function') abortedUploads = (await withUploads.abortStaleUploads(Math.max(minAgeMs, 24 * 3_600_000), dryRun)).length;
  const result: GcResult = {
    dryRun,
    removedBlobs,
    removedRefs: allRemovedRefs,
    keptBlobs: blobs.length - removedBlobs.length,
    bytesFreed: removedBlobs.reduce((n, b) => n + b.size, 0),
    abortedUploads,
  };
  logger.info({ store: store.location, dryRun, removed: removedBlobs.length, bytes: result.bytesFreed, refs: allRemovedRefs.length }, 'gc');
  return result;
}
