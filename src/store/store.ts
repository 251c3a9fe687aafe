/**
 * The artifact store: blobs addressed by sha256, plus named refs (small mutable pointers such as
 * "the manifest built from plan X"). One interface; the local content-addressed store is the
 * embedded default, other backends (S3) implement the same contract.
 */

export interface BlobRef {
  sha256: string;
  size: number;
}

export interface ArtifactStore {
  /** Add a file; `link` hard-links it in when possible instead of copying. Idempotent. */
  putFile(file: string, options?: { link?: boolean }): Promise<BlobRef>;
  putBytes(data: Buffer | string): Promise<BlobRef>;
  has(sha256: string): Promise<boolean>;
  /** The blob's bytes, verified against the digest before they are returned. */
  getBytes(sha256: string): Promise<Buffer>;
  /** Point a name at a digest, atomically. Names are slash-separated words. */
  setRef(name: string, sha256: string): Promise<void>;
  getRef(name: string): Promise<string | undefined>;
  /** A local file holding the blob, when the backend has one (the local store does). */
  localPath(sha256: string): string | undefined;
}

export const SHA256_RE = /^[0-9a-f]{64}$/;
export const REF_RE = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;
