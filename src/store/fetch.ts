/**
 * The deploy side of the store: fetch one artifact of a publication to a local directory, and
 * only hand it out once both checks passed — the publication manifest carries a valid signature
 * by a trusted Foundry key, and the bytes on disk hash to the digest that manifest names.
 *
 * The download is atomic (temp file beside the destination, verified, renamed), so the
 * destination is either absent, an earlier verified copy, or the new verified copy. A file already
 * there with the right digest is reused without downloading (it is re-hashed, never trusted by
 * name). Tampering surfaces as DigestMismatchError or SignatureInvalidError.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DigestMismatchError, SignatureInvalidError, StoreError } from '../errors';
import { logger } from '../log';
import { parsePublication, type PublicationManifest } from './publish';
import { verifySignature } from './signing';
import { REF_RE, signatureRefOf, type ArtifactStore, type TransferProgress } from './store';
import { sha256OfFile } from './transfer';
import { withTrustedSigners } from './trust';
import { parseDigest } from './pins';

/** The ref that names an image's current publication. */
export function imageRef(imageName: string): string {
  const ref = `images/${imageName}/latest`;
  if (!REF_RE.test(ref)) throw new StoreError(`image name "${imageName}" cannot name a ref`, 'image names are lowercase words (a-z, 0-9, ., _, -)');
  return ref;
}

/**
 * The digest of an image's current publication manifest (`images/<name>/latest`). StoreError
 * when the image was never published to this store.
 */
export async function resolveImageRef(store: ArtifactStore, imageName: string): Promise<string> {
  const ref = imageRef(imageName);
  const digest = await store.getRef(ref);
  if (!digest) {
    throw new StoreError(
      `no published image "${imageName}" in ${store.location} (ref ${ref} does not exist)`,
      'build it first (`kubedos build SPEC --image NAME`); `kubedos store ls` lists what is published',
    );
  }
  return digest;
}

/** A publication manifest whose signature verified. */
export interface VerifiedManifest {
  digest: string;
  manifest: PublicationManifest;
  bytes: Buffer;
}

/**
 * Read a publication manifest by digest and check its signature against the trusted signers.
 * StoreError when the digest is not a publication manifest; SignatureInvalidError when it is
 * unsigned or the signature does not verify.
 */
export async function verifiedManifest(
  store: ArtifactStore,
  manifestDigest: string,
  options: { allowedSigners: string; signal?: AbortSignal },
): Promise<VerifiedManifest> {
  const digest = parseDigest(manifestDigest, 'manifestDigest');
  const bytes = await store.getBytes(digest); // verified against the digest
  const manifest = parsePublication(bytes);
  if (!manifest) {
    throw new StoreError(
      `sha256:${digest} in ${store.location} is not a publication manifest`,
      'pass the digest of a publication manifest (resolveImageRef, or `kubedos store ls`), not of an artifact',
    );
  }
  const subject = `manifest sha256:${digest}`;
  const sigDigest = await store.getRef(signatureRefOf(digest));
  if (!sigDigest) throw new SignatureInvalidError(subject, `it is unsigned: ${store.location} holds no signature for it (ref ${signatureRefOf(digest)})`);
  const signature = (await store.getBytes(sigDigest)).toString('utf8');
  await verifySignature(bytes, signature, { allowedSigners: options.allowedSigners, subject, signal: options.signal });
  return { digest, manifest, bytes };
}

export interface FetchArtifactOptions {
  store: ArtifactStore;
  /** Digest of the signed publication manifest (resolveImageRef gives an image's current one). */
  manifestDigest: string;
  /** Which of the manifest's artifacts: `raw`, `qcow2`, `vmdk`, `ova`, … */
  format: string;
  /** Which file of a multi-file format (its manifest name). @default the format's first */
  file?: string;
  /** Directory to write the artifact into; created when missing. */
  destDir: string;
  /** Name of the file in destDir. @default `<first 16 hex of its sha256>-<artifact file name>` */
  fileName?: string;
  /** OpenSSH allowed_signers file of the trusted Foundry keys. @default see trustedSigners() */
  allowedSigners?: string;
  signal?: AbortSignal;
  /** Hashing a cached copy (`hash`) or downloading (`download`), in bytes. */
  onProgress?: (progress: TransferProgress) => void;
}

export interface FetchedArtifact {
  /** The verified file. */
  path: string;
  sha256: string;
  size: number;
  format: string;
  /** Digest of the publication manifest that vouches for it. */
  manifestDigest: string;
  manifest: PublicationManifest;
  /** The file was already present with the right digest: nothing was downloaded. */
  cached: boolean;
}

/**
 * Verify the manifest's signature, then make `destDir/<fileName>` the artifact of `format`,
 * verified against its digest. Throws SignatureInvalidError (unsigned or not signed by a trusted
 * key), DigestMismatchError (the stored bytes were altered: nothing is written), StoreError
 * (unknown manifest or format).
 */
export async function fetchVerifiedArtifact(options: FetchArtifactOptions): Promise<FetchedArtifact> {
  const { store, signal } = options;
  const verified = await withTrustedSigners({ allowedSigners: options.allowedSigners }, (trust) =>
    verifiedManifest(store, options.manifestDigest, { allowedSigners: trust.file, signal }),
  );
  const { manifest } = verified;
  const artifact = manifest.artifacts.find((a) => a.format === options.format && (options.file === undefined || a.file === options.file));
  if (!artifact) {
    throw new StoreError(
      `manifest sha256:${verified.digest} (${manifest.image.name}) has no ${options.format} artifact${options.file === undefined ? '' : ` named ${options.file}`}; it has ${manifest.artifacts.map((a) => (options.file === undefined ? a.format : a.file)).join(', ') || 'none'}`,
      'pick one of those formats, or build the image with the format added to its outputs',
    );
  }
  const dest = path.join(options.destDir, options.fileName ?? `${artifact.sha256.slice(0, 16)}-${artifact.file}`);
  const result = (cached: boolean): FetchedArtifact => ({
    path: dest,
    sha256: artifact.sha256,
    size: artifact.size,
    format: artifact.format,
    manifestDigest: verified.digest,
    manifest,
    cached,
  });

  // A copy already there: re-hash it; reuse it only if it is exactly the artifact.
  const existing = await fs.stat(dest).catch(() => undefined);
  if (existing?.isFile() && existing.size === artifact.size) {
    const have = await sha256OfFile(dest, { signal, onProgress: options.onProgress });
    if (have.sha256 === artifact.sha256) return result(true);
    logger.warn({ path: dest, expected: artifact.sha256, actual: have.sha256 }, 'a cached artifact does not match its digest; downloading it again');
  }

  await fs.mkdir(options.destDir, { recursive: true });
  const got = await store.getFile(artifact.sha256, dest, { signal, onProgress: options.onProgress });
  if (got.sha256 !== artifact.sha256) throw new DigestMismatchError(artifact.sha256, got.sha256, dest);
  if (got.size !== artifact.size) {
    await fs.rm(dest, { force: true });
    throw new StoreError(`${dest}: ${got.size} bytes, but manifest sha256:${verified.digest} says ${artifact.size}`, 'the manifest is inconsistent: republish the build');
  }
  return result(false);
}
