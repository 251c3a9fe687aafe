/**
 * Publishing a build: the artifacts, then the supply-chain documents, then the signed manifest
 * that ties them together, then — last — the ref that makes the publication visible. A reader
 * that finds the ref finds every blob it names already stored; a publish interrupted before its
 * last step leaves only unreferenced blobs (gc removes them).
 */
import path from 'node:path';
import type { BuildManifest } from '../foundry/manifest';
import { parseLock } from '../foundry/lock';
import { DigestMismatchError, StoreError } from '../errors';
import { buildProvenance, IN_TOTO_MEDIA_TYPE, serializeProvenance } from './provenance';
import { buildSbom, packagesFromLock, serializeSbom, SPDX_MEDIA_TYPE } from './sbom';
import type { FoundrySigner } from './signing';
import { signatureRefOf, type ArtifactStore, type BlobRef, type PutResult, type TransferProgress, type UploadCheckpoint } from './store';

export const PUBLICATION_SCHEMA = 'kubedos.publication/v1';

/** The signed manifest of a publication: every blob of one build, by digest. */
export interface PublicationManifest {
  schema: typeof PUBLICATION_SCHEMA;
  image: BuildManifest['image'];
  inputDigest: string;
  lockDigest: string;
  sourceDateEpoch: number;
  artifacts: BuildManifest['artifacts'];
  /** The build's own manifest (`<image>.manifest.json`). */
  buildManifest: BlobRef;
  lock: BlobRef;
  sbom: BlobRef & { mediaType: typeof SPDX_MEDIA_TYPE };
  provenance: BlobRef & { mediaType: typeof IN_TOTO_MEDIA_TYPE };
}

/** Parse a blob as a publication manifest; undefined when it is something else. */
export function parsePublication(bytes: Buffer): PublicationManifest | undefined {
  if (bytes.length === 0 || bytes[0] !== 0x7b /* { */) return undefined;
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as PublicationManifest;
    return doc && doc.schema === PUBLICATION_SCHEMA && Array.isArray(doc.artifacts) ? doc : undefined;
  } catch {
    return undefined;
  }
}

/** Every digest a publication manifest references. */
export function publicationDigests(m: PublicationManifest): string[] {
  return [...m.artifacts.map((a) => a.sha256), m.buildManifest.sha256, m.lock.sha256, m.sbom.sha256, m.provenance.sha256];
}

export interface PublishBuildInput {
  /** Directory holding the artifact files named in the manifest (or give `artifactPath`). */
  outputDir?: string;
  /**
   * Where an artifact's file is, when not `outputDir/<file>` (e.g. a blob in this host's staging
   * store). Only asked for artifacts the store does not hold yet.
   */
  artifactPath?: (artifact: BuildManifest['artifacts'][number]) => string | undefined;
  manifest: BuildManifest;
  /** kubedos.lock text of the build. */
  lockText: string;
  /** sha256 of the platform spec (provenance external parameter). */
  specDigest: string;
  signer: FoundrySigner;
  mirror?: string;
  securityMirror?: string;
  /** The ref that makes the publication visible. @default `images/<image name>/latest` */
  ref?: string;
  /** Provenance invocation id (e.g. the workflow id). */
  invocationId?: string;
  version?: string;
}

export interface PublishOptions {
  signal?: AbortSignal;
  onProgress?: (file: string, progress: TransferProgress) => void;
  /** Checkpoints of interrupted artifact uploads, by artifact file name. */
  resume?: Record<string, UploadCheckpoint>;
  onCheckpoint?: (file: string, checkpoint: UploadCheckpoint) => void;
}

export interface PublishResult {
  ref: string;
  manifest: BlobRef;
  signature: BlobRef;
  sbom: BlobRef;
  provenance: BlobRef;
  artifacts: (PutResult & { file: string })[];
}

/** The local file of an artifact to upload. */
function sourceOf(input: PublishBuildInput, a: BuildManifest['artifacts'][number]): string {
  const file = input.artifactPath?.(a) ?? (input.outputDir !== undefined ? path.join(input.outputDir, a.file) : undefined);
  if (!file) {
    throw new StoreError(
      `${a.file} (sha256:${a.sha256}) is neither in the store nor staged on this host`,
      'publish on the host that built it (its publish queue), or build it again',
    );
  }
  return file;
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export async function publishBuild(store: ArtifactStore, input: PublishBuildInput, options: PublishOptions = {}): Promise<PublishResult> {
  const { manifest } = input;
  const ref = input.ref ?? `images/${manifest.image.name}/latest`;

  // 1. Artifacts (large, resumable), each checked against the digest the build recorded. A digest
  // the store already holds is not read again: an object under a digest key is always verified.
  const artifacts: PublishResult['artifacts'] = [];
  for (const a of manifest.artifacts) {
    if (await store.has(a.sha256)) {
      options.onProgress?.(a.file, { phase: 'upload', bytes: a.size, total: a.size });
      artifacts.push({ sha256: a.sha256, size: a.size, existed: true, file: a.file });
      continue;
    }
    const source = sourceOf(input, a);
    const put = await store.putFile(source, {
      link: true,
      expectSha256: a.sha256,
      signal: options.signal,
      resume: options.resume?.[a.file],
      onProgress: options.onProgress && ((p) => options.onProgress!(a.file, p)),
      onCheckpoint: options.onCheckpoint && ((cp) => options.onCheckpoint!(a.file, cp)),
    });
    if (put.sha256 !== a.sha256 || put.size !== a.size) {
      // The local copy is not what was built (changed or damaged since): never publish it.
      throw new DigestMismatchError(a.sha256, put.sha256, `${source} (${a.file}, ${put.size} bytes; the build recorded ${a.size})`);
    }
    artifacts.push({ ...put, file: a.file });
  }

  // 2. The build manifest, the lock, the SBOM and the provenance.
  const lock = parseLock(input.lockText);
  const buildManifest = await store.putBytes(json(manifest));
  const lockBlob = await store.putBytes(input.lockText);
  const single = manifest.artifacts.length === 1 ? manifest.artifacts[0]!.sha256 : undefined;
  const sbom = await store.putBytes(
    serializeSbom(
      buildSbom({
        image: { name: manifest.image.name, version: manifest.inputDigest, ...(single ? { sha256: single } : {}) },
        packages: packagesFromLock(lock),
        sourceDateEpoch: manifest.sourceDateEpoch,
        mirror: input.mirror,
        securityMirror: input.securityMirror,
      }),
    ),
  );
  const provenance = await store.putBytes(
    serializeProvenance(
      buildProvenance({
        subjects: manifest.artifacts.map((a) => ({ name: a.file, sha256: a.sha256 })),
        image: { name: manifest.image.name, role: manifest.image.role },
        specDigest: input.specDigest,
        lockDigest: manifest.lockDigest,
        inputDigest: manifest.inputDigest,
        sourceDateEpoch: manifest.sourceDateEpoch,
        mirror: input.mirror,
        securityMirror: input.securityMirror,
        invocationId: input.invocationId,
        version: input.version,
      }),
    ),
  );

  // 3. The publication manifest and its signature.
  const publication: PublicationManifest = {
    schema: PUBLICATION_SCHEMA,
    image: manifest.image,
    inputDigest: manifest.inputDigest,
    lockDigest: manifest.lockDigest,
    sourceDateEpoch: manifest.sourceDateEpoch,
    artifacts: manifest.artifacts.map(({ format, file, sha256, size }) => ({ format, file, sha256, size })),
    buildManifest,
    lock: lockBlob,
    sbom: { ...sbom, mediaType: SPDX_MEDIA_TYPE },
    provenance: { ...provenance, mediaType: IN_TOTO_MEDIA_TYPE },
  };
  const bytes = Buffer.from(json(publication));
  const signature = await store.putBytes(await input.signer.sign(bytes, options.signal));
  const manifestBlob = await store.putBytes(bytes);
  await store.setRef(signatureRefOf(manifestBlob.sha256), signature.sha256);

  // 4. Last: the ref. Before this, nothing of the publication is visible.
  await store.setRef(ref, manifestBlob.sha256);
  return { ref, manifest: manifestBlob, signature, sbom, provenance, artifacts };
}
