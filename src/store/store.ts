/**
 * The artifact store: blobs addressed by sha256, plus named refs (small mutable pointers such as
 * "the manifest built from plan X"). One interface; the local content-addressed store is the
 * embedded default, other backends (S3) implement the same contract.
 */

export interface BlobRef {
  sha256: string;
  size: number;
}

/** Progress of a transfer, in bytes. */
export interface TransferProgress {
  /** Hashing the source, sending it, or receiving it (a put reports `hash`, then `upload`). */
  phase: 'hash' | 'upload' | 'download';
  bytes: number;
  total: number;
}

/** Options every long transfer takes. */
export interface TransferOptions {
  /** Cancels the transfer; it rejects with CancelledError. */
  signal?: AbortSignal;
  /** Called as bytes move (hashing, then uploading or downloading). */
  onProgress?: (progress: TransferProgress) => void;
}

/** One part the server acknowledged for a multipart upload. */
export interface UploadedPart {
  partNumber: number;
  etag: string;
  /** base64 sha256 of the part's bytes (the S3 `x-amz-checksum-sha256` of the part). */
  checksumSHA256: string;
}

/**
 * Where an interrupted upload stands: small and JSON-serialisable, so an activity can keep it in
 * its heartbeat details and a retry can resume from it.
 */
export interface UploadCheckpoint {
  uploadId: string;
  /** Object key the upload completes into (`blobs/sha256/<hex>`): it names the digest too. */
  key: string;
  partSize: number;
  parts: UploadedPart[];
}

export interface PutFileOptions extends TransferOptions {
  /** Hard-link the file in when possible instead of copying (local store only). */
  link?: boolean;
  /** Resume this interrupted upload (remote backends); ignored when it no longer applies. */
  resume?: UploadCheckpoint;
  /** Called after every part the server acknowledged (remote backends). */
  onCheckpoint?: (checkpoint: UploadCheckpoint) => void;
  /** Refuse a file that does not hash to this (DigestMismatchError) before anything is stored. */
  expectSha256?: string;
}

/** What a put did, beyond the digest. */
export interface PutResult extends BlobRef {
  /** The blob was already stored: nothing was uploaded or copied. */
  existed: boolean;
  /** Multipart uploads: parts sent in this call. */
  partsUploaded?: number;
  /** Multipart uploads: parts a resumed upload found already on the server. */
  partsReused?: number;
}

/** A stored blob, as listed. */
export interface BlobInfo extends BlobRef {
  /** When the blob was written (used by gc's grace period). */
  modified: Date;
}

export interface ArtifactStore {
  /** Add a file, streamed and verified. Idempotent: a digest already stored is not sent again. */
  putFile(file: string, options?: PutFileOptions): Promise<PutResult>;
  putBytes(data: Buffer | string): Promise<BlobRef>;
  has(sha256: string): Promise<boolean>;
  /** The blob's bytes, verified against the digest before they are returned. */
  getBytes(sha256: string): Promise<Buffer>;
  /**
   * Download a blob to `dest`: written to a temp file beside it, its sha256 checked, then renamed
   * into place, so `dest` is either absent/untouched or the verified content. Zero blocks become
   * holes (images stay sparse).
   */
  getFile(sha256: string, dest: string, options?: TransferOptions): Promise<BlobRef>;
  /** Read the stored blob through and check it hashes to its digest (DigestMismatchError if not). */
  verifyBlob(sha256: string, options?: TransferOptions): Promise<BlobRef>;
  /** Every stored blob (for gc). */
  listBlobs(): Promise<BlobInfo[]>;
  /** Remove a blob (gc only). Removing an absent blob is not an error. */
  deleteBlob(sha256: string): Promise<void>;
  /** Point a name at a digest, atomically. Names are slash-separated words. */
  setRef(name: string, sha256: string): Promise<void>;
  getRef(name: string): Promise<string | undefined>;
  /** Names of refs starting with `prefix` (all refs when omitted), sorted. */
  listRefs(prefix?: string): Promise<string[]>;
  /** Remove a ref; removing an absent ref is not an error. */
  deleteRef(name: string): Promise<void>;
  /** A local file holding the blob, when the backend has one (the local store does). */
  localPath(sha256: string): string | undefined;
  /** Where the store is, for messages (`/var/lib/…/store`, `s3://bucket`). */
  readonly location: string;
}

export const SHA256_RE = /^[0-9a-f]{64}$/;
export const REF_RE = /^[a-z0-9][a-z0-9._-]*(\/[a-z0-9][a-z0-9._-]*)*$/;

/** Refs under this prefix are GC roots that are never collected: `refs/pins/<name>`. */
export const PIN_PREFIX = 'pins/';
/** `signatures/<manifest hex>` → the digest of the manifest's SSHSIG signature blob. */
export const SIGNATURE_PREFIX = 'signatures/';

/** The ref that holds a manifest's signature. */
export function signatureRefOf(manifestSha256: string): string {
  return `${SIGNATURE_PREFIX}${manifestSha256}`;
}
