/**
 * The resumable, verified multipart upload of one local file into one S3 object, shared by the S3
 * artifact store (./s3.ts) and any other S3 user that uploads large verified files (a cloud
 * target's image import). Behaviour, as the store documents it:
 *
 * - The object is written straight under its final key; an incomplete multipart upload is
 *   invisible to readers.
 * - Every part carries its own SHA256 checksum, which the server checks; the parts are hashed as
 *   they are read, and the upload is completed only when the hash of every byte sent equals the
 *   digest measured first (a file changed mid-upload is aborted, never completed).
 * - Resume: every acknowledged part is reported as an UploadCheckpoint; given one back, ListParts
 *   tells which parts the server really holds, those whose SHA256 matches the local part are
 *   kept, and only the rest are sent.
 *
 * The caller says how SDK failures are worded (`wrap`): the store's become StoreErrors naming
 * KUBEDOS_S3_*, a target's name the fields of its spec.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListPartsCommand,
  UploadPartCommand,
  type Part,
  type S3Client,
} from '@aws-sdk/client-s3';
import { CancelledError, DigestMismatchError, StoreError } from '../errors';
import { logger } from '../log';
import type { BlobRef, PutFileOptions, PutResult, UploadCheckpoint, UploadedPart } from './store';
import { readInto, throwIfAborted } from './transfer';

const MiB = 1024 * 1024;
/** S3's limits: parts of 5 MiB to 5 GiB, at most 10 000 of them. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * 1024 * MiB;
export const MAX_PARTS = 10_000;

/** One bucket, as the upload sees it. */
export interface S3Bucket {
  client: S3Client;
  bucket: string;
  /** How messages name the bucket, e.g. `s3://kubedos-artifacts`. */
  location: string;
  /** Turn an SDK failure of `what` into the caller's error (cancellation is handled before). */
  wrap(what: string, err: unknown): Error;
}

interface AwsLikeError {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

export function isS3NotFound(err: unknown): boolean {
  const e = err as AwsLikeError;
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.name === 'NoSuchUpload' || e?.$metadata?.httpStatusCode === 404;
}

/** Part size for a file: the configured one, grown (to whole MiB) when 10 000 parts would not do. */
export function choosePartSize(size: number, configured: number): number {
  let part = Math.max(configured, MIN_PART_SIZE);
  if (Math.ceil(size / part) > MAX_PARTS) part = Math.ceil(size / MAX_PARTS / MiB) * MiB;
  if (part > MAX_PART_SIZE) throw new StoreError(`a file of ${size} bytes is too large for one S3 object`, 'S3 objects are limited to 5 TiB');
  return part;
}

/** The S3 composite checksum of a multipart object: sha256 of the parts' sha256s, base64, `-N`. */
export function compositeChecksum(partDigests: readonly Buffer[]): string {
  const h = createHash('sha256');
  for (const d of partDigests) h.update(d);
  return `${h.digest('base64')}-${partDigests.length}`;
}

/** Run one request; failures go through `wrap` (cancellation becomes CancelledError). */
export async function sendS3<T>(b: S3Bucket, what: string, run: (abortSignal?: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
  throwIfAborted(signal, what);
  try {
    return await run(signal);
  } catch (err) {
    if (signal?.aborted) throw new CancelledError(what);
    throw b.wrap(what, err);
  }
}

/** Size, time and metadata of an object; undefined when there is none. */
export async function headS3Object(b: S3Bucket, key: string, signal?: AbortSignal): Promise<{ size: number; modified?: Date; metadata: Record<string, string>; etag?: string } | undefined> {
  try {
    const res = await b.client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: key }), { abortSignal: signal });
    return { size: res.ContentLength ?? 0, modified: res.LastModified, metadata: res.Metadata ?? {}, etag: res.ETag };
  } catch (err) {
    if (signal?.aborted) throw new CancelledError(`HeadObject ${key}`);
    if (isS3NotFound(err)) return undefined;
    throw b.wrap(`HeadObject ${key}`, err);
  }
}

/** Parts the server holds for an upload; undefined when the upload no longer exists. */
export async function listUploadParts(b: S3Bucket, key: string, uploadId: string, signal?: AbortSignal): Promise<Part[] | undefined> {
  const parts: Part[] = [];
  let marker: string | undefined;
  try {
    for (;;) {
      const res = await b.client.send(new ListPartsCommand({ Bucket: b.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }), { abortSignal: signal });
      parts.push(...(res.Parts ?? []));
      if (!res.IsTruncated || res.NextPartNumberMarker === undefined) break;
      marker = String(res.NextPartNumberMarker);
    }
    return parts;
  } catch (err) {
    if (signal?.aborted) throw new CancelledError(`ListParts ${key}`);
    if (isS3NotFound(err)) return undefined;
    throw b.wrap(`ListParts ${key}`, err);
  }
}

/** Abort a multipart upload, best effort (it may be gone already). */
export async function abortMultipartUpload(b: S3Bucket, key: string, uploadId: string): Promise<void> {
  try {
    await b.client.send(new AbortMultipartUploadCommand({ Bucket: b.bucket, Key: key, UploadId: uploadId }));
  } catch (err) {
    if (!isS3NotFound(err)) logger.warn({ key, uploadId, err: String(err) }, 'could not abort a multipart upload');
  }
}

export interface MultipartOptions extends PutFileOptions {
  /** Configured part size (grown for very large files, see choosePartSize). */
  partSize: number;
  /** Object metadata. @default { sha256: <the file's digest> } */
  metadata?: Record<string, string>;
}

/**
 * Upload `file` (whose digest and size the caller measured: `ref`) to `key` as a multipart
 * upload, resuming `options.resume` when it is an upload of this key. See the file comment.
 */
export async function putMultipart(b: S3Bucket, file: string, ref: BlobRef, key: string, options: MultipartOptions): Promise<PutResult> {
  const { signal } = options;
  let partSize = choosePartSize(ref.size, options.partSize);
  let uploadId: string | undefined;
  const onServer = new Map<number, UploadedPart & { size?: number }>();

  const resume = options.resume;
  if (resume && resume.key === key && Math.ceil(ref.size / resume.partSize) <= MAX_PARTS && resume.partSize >= MIN_PART_SIZE) {
    const listed = await listUploadParts(b, key, resume.uploadId, signal);
    if (listed) {
      uploadId = resume.uploadId;
      partSize = resume.partSize;
      const recorded = new Map(resume.parts.map((p) => [p.partNumber, p]));
      for (const p of listed) {
        if (!p.PartNumber || !p.ETag) continue;
        const mine = recorded.get(p.PartNumber);
        // The server's own checksum of the part when it reports one; else ours, if the ETag agrees.
        const checksum = p.ChecksumSHA256 ?? (mine && mine.etag === p.ETag ? mine.checksumSHA256 : undefined);
        if (checksum) onServer.set(p.PartNumber, { partNumber: p.PartNumber, etag: p.ETag, checksumSHA256: checksum, size: p.Size });
      }
      logger.info({ key, uploadId, partsOnServer: onServer.size }, 'resuming multipart upload');
    } else {
      logger.info({ key, uploadId: resume.uploadId }, 'the checkpointed upload is gone; starting over');
    }
  } else if (resume) {
    // The file is not what the checkpoint was for (or its part size is unusable): drop that upload.
    await abortMultipartUpload(b, resume.key, resume.uploadId);
  }

  if (!uploadId) {
    const created = await sendS3(
      b,
      `CreateMultipartUpload ${key}`,
      (abortSignal) =>
        b.client.send(
          new CreateMultipartUploadCommand({
            Bucket: b.bucket,
            Key: key,
            ContentType: 'application/octet-stream',
            ChecksumAlgorithm: 'SHA256',
            Metadata: options.metadata ?? { sha256: ref.sha256 },
          }),
          { abortSignal },
        ),
      signal,
    );
    if (!created.UploadId) throw new StoreError(`${b.location}: CreateMultipartUpload ${key} returned no upload id`);
    uploadId = created.UploadId;
  }

  const count = Math.max(1, Math.ceil(ref.size / partSize));
  const done: UploadedPart[] = [];
  const checkpoint = (): UploadCheckpoint => ({ uploadId: uploadId!, key, partSize, parts: done.map((p) => ({ ...p })) });
  options.onCheckpoint?.(checkpoint());

  const whole = createHash('sha256');
  const partDigests: Buffer[] = [];
  let uploaded = 0;
  let reused = 0;
  let sent = 0;
  const buffer = Buffer.allocUnsafe(Math.min(partSize, Math.max(ref.size, 1)));
  const handle = await fs.open(file, 'r');
  try {
    for (let n = 1; n <= count; n++) {
      throwIfAborted(signal, `upload of ${file}`);
      const offset = (n - 1) * partSize;
      const length = Math.min(partSize, ref.size - offset);
      // One buffer for every part: parts go one at a time, so memory stays at one part.
      const body = await readInto(handle, buffer, offset, length);
      if (body.length !== length) throw new DigestMismatchError(ref.sha256, 'unknown', `${file} (shrank while it was being uploaded)`);
      whole.update(body);
      const partDigest = createHash('sha256').update(body).digest();
      partDigests.push(partDigest);
      const checksum = partDigest.toString('base64');

      const have = onServer.get(n);
      if (have && have.checksumSHA256 === checksum && (have.size === undefined || have.size === body.length)) {
        done.push({ partNumber: n, etag: have.etag, checksumSHA256: have.checksumSHA256 });
        reused++;
      } else {
        const res = await sendS3(
          b,
          `UploadPart ${n}/${count} of ${key}`,
          (abortSignal) =>
            b.client.send(
              new UploadPartCommand({
                Bucket: b.bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: n,
                Body: body,
                ContentLength: body.length,
                ChecksumSHA256: checksum,
              }),
              { abortSignal },
            ),
          signal,
        );
        if (!res.ETag) throw new StoreError(`${b.location}: UploadPart ${n} of ${key} returned no ETag`);
        if (res.ChecksumSHA256 && res.ChecksumSHA256 !== checksum) {
          throw new StoreError(`${b.location}: the server acknowledged part ${n} of ${key} with SHA256 ${res.ChecksumSHA256}, expected ${checksum}`);
        }
        done.push({ partNumber: n, etag: res.ETag, checksumSHA256: checksum });
        uploaded++;
        options.onCheckpoint?.(checkpoint());
      }
      sent += body.length;
      options.onProgress?.({ phase: 'upload', bytes: sent, total: ref.size });
    }
  } finally {
    await handle.close();
  }

  const actual = whole.digest('hex');
  if (actual !== ref.sha256) {
    // Never complete an object whose bytes are not the digest the caller measured.
    await abortMultipartUpload(b, key, uploadId);
    throw new DigestMismatchError(ref.sha256, actual, `${file} (changed while it was being uploaded)`);
  }
  const completed = await sendS3(
    b,
    `CompleteMultipartUpload ${key}`,
    (abortSignal) =>
      b.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: b.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: done.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag, ChecksumSHA256: p.checksumSHA256 })) },
        }),
        { abortSignal },
      ),
    signal,
  );
  const expected = compositeChecksum(partDigests);
  if (completed.ChecksumSHA256 && completed.ChecksumSHA256.split('-')[0] !== expected.split('-')[0]) {
    throw new StoreError(`${b.location}/${key}: the completed object's checksum ${completed.ChecksumSHA256} is not the parts' ${expected}`, 'the server assembled other bytes: delete the object and publish again');
  }
  const final = await headS3Object(b, key, signal);
  if (!final || final.size !== ref.size) {
    throw new StoreError(`${b.location}/${key}: after completion the object has ${final?.size ?? 'no'} bytes, expected ${ref.size}`);
  }
  return { ...ref, existed: false, partsUploaded: uploaded, partsReused: reused };
}
