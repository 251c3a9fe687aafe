/**
 * The S3 backend: the same content-addressed contract over any S3-compatible server.
 *
 * Layout in the bucket: `blobs/sha256/<64 hex>` (the bytes) and `refs/<name>` (`<hex>\n`).
 *
 * Integrity: an object under a digest key is only ever the full, verified content. Small blobs go
 * in one PutObject carrying `x-amz-checksum-sha256` of the whole body, which the server checks —
 * and that checksum *is* the digest in the key. Large files go as a multipart upload straight
 * under the final key (an incomplete multipart upload is invisible to readers), each part carrying
 * its own SHA256 checksum that the server checks; the parts are hashed as they are read, and the
 * upload is only completed when the hash of every byte sent equals the digest measured first (a
 * file changed mid-upload is aborted, never completed). Two publishers of one digest each run
 * their own multipart upload; whichever completes last replaces an identical object.
 *
 * Resume: every acknowledged part is reported as an UploadCheckpoint; given one back, ListParts
 * tells which parts the server really holds, those whose SHA256 matches the local part are kept,
 * and only the rest are sent. (The multipart upload itself is ./s3-multipart.ts, shared with
 * other S3 users such as a cloud target's image import.)
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { CancelledError, ConfigError, DigestMismatchError, StoreError, StoreObjectNotFoundError, StoreUnavailableError } from '../errors';
import {
  REF_RE,
  SHA256_RE,
  type ArtifactStore,
  type BlobInfo,
  type BlobRef,
  type PutFileOptions,
  type PutResult,
  type TransferOptions,
} from './store';
import { abortMultipartUpload, headS3Object, isS3NotFound, MAX_PART_SIZE, MIN_PART_SIZE, putMultipart, sendS3, type S3Bucket } from './s3-multipart';
import { sha256OfFile, throwIfAborted, writeVerified } from './transfer';

const MiB = 1024 * 1024;
const BLOB_PREFIX = 'blobs/sha256/';
const REF_PREFIX = 'refs/';

export interface S3Config {
  bucket: string;
  /** @default 'us-east-1' */
  region?: string;
  /** S3-compatible server URL (MinIO, versitygw, Ceph RGW…); AWS when omitted. */
  endpoint?: string;
  /** Path-style addressing (`http://host/bucket/key`). @default true when `endpoint` is set */
  forcePathStyle?: boolean;
  /** Static credentials; the SDK's default provider chain (env, profile, IMDS) when omitted. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Multipart part size in bytes, grown when a file would need more than 10 000 parts. @default 64 MiB */
  partSize?: number;
  /** Files up to this size go in one PutObject. @default partSize */
  singlePutMax?: number;
  /** Attempts per request (the SDK retries throttling and 5xx). @default 3 */
  maxAttempts?: number;
}

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

/**
 * The S3 store's configuration from the environment, or undefined when KUBEDOS_S3_BUCKET is unset
 * (then the local store is used). Reads KUBEDOS_S3_BUCKET, KUBEDOS_S3_ENDPOINT, KUBEDOS_S3_REGION,
 * KUBEDOS_S3_PATH_STYLE and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).
 */
export function s3ConfigFromEnv(environment: NodeJS.ProcessEnv = process.env): S3Config | undefined {
  const get = (name: string) => (environment[name] === '' ? undefined : environment[name]);
  const bucket = get('KUBEDOS_S3_BUCKET');
  if (!bucket) return undefined;
  const endpoint = get('KUBEDOS_S3_ENDPOINT');
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint)) {
    throw new ConfigError(`KUBEDOS_S3_ENDPOINT="${endpoint}" is not an http(s) URL`, 'e.g. http://127.0.0.1:7070 or https://s3.example.net');
  }
  const style = get('KUBEDOS_S3_PATH_STYLE')?.toLowerCase();
  if (style !== undefined && !TRUE.has(style) && !FALSE.has(style)) {
    throw new ConfigError(`KUBEDOS_S3_PATH_STYLE="${style}" is not a boolean`, 'use true or false');
  }
  const accessKeyId = get('AWS_ACCESS_KEY_ID');
  const secretAccessKey = get('AWS_SECRET_ACCESS_KEY');
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    throw new ConfigError('only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set', 'set both, or neither to use the default AWS credential chain');
  }
  const sessionToken = get('AWS_SESSION_TOKEN');
  return {
    bucket,
    region: get('KUBEDOS_S3_REGION') ?? get('AWS_REGION') ?? 'us-east-1',
    endpoint,
    forcePathStyle: style === undefined ? endpoint !== undefined : TRUE.has(style),
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } : undefined,
  };
}

/** The object key of a blob. */
export function blobKey(sha256: string): string {
  if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`, 'digests are 64 lowercase hex characters');
  return `${BLOB_PREFIX}${sha256}`;
}

function refKey(name: string): string {
  if (!REF_RE.test(name)) throw new StoreError(`"${name}" is not a valid ref name`, 'use lowercase words separated by /');
  return `${REF_PREFIX}${name}`;
}

interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const isNotFound = isS3NotFound;

/** A failure another try may not meet: no connection, a timeout, a 5xx, throttling (the SDK's own retries already ran). */
function isTransient(e: AwsLikeError): boolean {
  const status = e?.$metadata?.httpStatusCode ?? 0;
  if (status >= 500 || status === 429 || status === 408) return true;
  if (/SlowDown|Throttl|RequestTimeout|TooManyRequests|InternalError|ServiceUnavailable|TimeoutError/i.test(e?.name ?? '')) return true;
  return /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|ECONNRESET|EPIPE|EAI_AGAIN|socket hang up/i.test(`${e?.code ?? ''} ${e?.message ?? ''}`);
}

export { choosePartSize, compositeChecksum } from './s3-multipart';

export class S3Store implements ArtifactStore {
  /** The SDK client (exposed so callers and tests can add middleware, e.g. request counters). */
  readonly client: S3Client;
  readonly bucket: string;
  private readonly partSize: number;
  private readonly singlePutMax: number;
  /** This bucket as the shared multipart upload sees it (./s3-multipart.ts). */
  private readonly bucketView: S3Bucket;

  constructor(config: S3Config) {
    if (!config.bucket) throw new ConfigError('the S3 store needs a bucket', 'set KUBEDOS_S3_BUCKET');
    this.bucket = config.bucket;
    this.partSize = config.partSize ?? 64 * MiB;
    if (this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE) {
      throw new ConfigError(`S3 part size ${this.partSize} is outside 5 MiB..5 GiB`);
    }
    this.singlePutMax = Math.min(config.singlePutMax ?? this.partSize, MAX_PART_SIZE);
    this.client = new S3Client({
      region: config.region ?? 'us-east-1',
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle ?? config.endpoint !== undefined,
      credentials: config.credentials,
      maxAttempts: config.maxAttempts ?? 3,
      // We send SHA256 checksums ourselves and verify downloads by digest: no extra CRC work.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.bucketView = { client: this.client, bucket: this.bucket, location: this.location, wrap: (what, err) => this.wrap(what, err) };
  }

  get location(): string {
    return `s3://${this.bucket}`;
  }

  /** Run one request; S3 failures become StoreError (cancellation CancelledError). */
  private send<T>(what: string, run: (abortSignal?: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return sendS3(this.bucketView, what, run, signal);
  }

  private wrap(what: string, err: unknown): Error {
    if (err instanceof StoreError || err instanceof CancelledError || err instanceof DigestMismatchError) return err;
    const e = err as AwsLikeError;
    const name = e?.name ?? e?.code ?? 'Error';
    const message = `${this.location}: ${what} failed: ${name}: ${e?.message ?? String(err)}`;
    if (name === 'NoSuchBucket') return new StoreError(message, `create the bucket "${this.bucket}" or fix KUBEDOS_S3_BUCKET`, { cause: err });
    if (/AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|Credentials/i.test(name)) {
      return new StoreError(message, 'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy', { cause: err });
    }
    if (isNotFound(err)) return new StoreObjectNotFoundError(message, 'build or publish it first', { cause: err });
    if (isTransient(e)) {
      const unreachable = /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|ECONNRESET|EPIPE/.test(`${e?.code ?? ''} ${e?.message ?? ''}`);
      return new StoreUnavailableError(message, unreachable ? 'the S3 endpoint is unreachable: check KUBEDOS_S3_ENDPOINT and that the server runs' : 'the S3 server is busy or failing; the step is retried', { cause: err });
    }
    return new StoreError(message, 'check the S3 server, bucket and credentials', { cause: err });
  }

  /** Create the bucket when it does not exist (setup and tests). */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (!isNotFound(err) && (err as AwsLikeError).name !== 'NoSuchBucket') throw this.wrap('HeadBucket', err);
    }
    await this.send('CreateBucket', () => this.client.send(new CreateBucketCommand({ Bucket: this.bucket })));
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.head(blobKey(sha256))) !== undefined;
  }

  private head(key: string, signal?: AbortSignal): Promise<{ size: number; modified?: Date; metadata: Record<string, string> } | undefined> {
    return headS3Object(this.bucketView, key, signal);
  }

  async putBytes(data: Buffer | string): Promise<BlobRef> {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const digest = createHash('sha256').update(bytes).digest();
    const sha256 = digest.toString('hex');
    if (!(await this.has(sha256))) await this.putSingle(blobKey(sha256), bytes, digest);
    return { sha256, size: bytes.length };
  }

  /** One PutObject of a blob whose body the server checks against the sha256 (= the digest in the key). */
  private async putSingle(key: string, body: Buffer, digest: Buffer, signal?: AbortSignal): Promise<void> {
    await this.putChecked(key, body, digest, { contentType: 'application/octet-stream', metadata: { sha256: digest.toString('hex') }, signal });
  }

  /** One PutObject carrying the body's SHA256, which the server checks before storing it. */
  private async putChecked(
    key: string,
    body: Buffer,
    digest: Buffer,
    options: { contentType: string; metadata?: Record<string, string>; signal?: AbortSignal },
  ): Promise<void> {
    await this.send(
      `PutObject ${key}`,
      (abortSignal) =>
        this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ContentLength: body.length,
            ContentType: options.contentType,
            ChecksumSHA256: digest.toString('base64'),
            Metadata: options.metadata,
          }),
          { abortSignal },
        ),
      options.signal,
    );
  }

  async putFile(file: string, options: PutFileOptions = {}): Promise<PutResult> {
    const { signal } = options;
    const ref = await sha256OfFile(file, { signal, onProgress: options.onProgress });
    if (options.expectSha256 && ref.sha256 !== options.expectSha256) throw new DigestMismatchError(options.expectSha256, ref.sha256, file);
    const key = blobKey(ref.sha256);
    const existing = await this.head(key, signal);
    if (existing) {
      if (existing.size !== ref.size) {
        throw new StoreError(`${this.location}/${key} holds ${existing.size} bytes, but ${file} with that digest has ${ref.size}`, 'the stored object is corrupt: delete it and publish again');
      }
      if (options.resume) await this.abortUpload(options.resume.key, options.resume.uploadId);
      return { ...ref, existed: true };
    }
    if (ref.size <= this.singlePutMax && !(options.resume && options.resume.key === key)) {
      const body = await fs.readFile(file);
      const digest = createHash('sha256').update(body).digest();
      if (digest.toString('hex') !== ref.sha256) throw new DigestMismatchError(ref.sha256, digest.toString('hex'), `${file} (changed while it was being stored)`);
      await this.putSingle(key, body, digest, signal);
      options.onProgress?.({ phase: 'upload', bytes: ref.size, total: ref.size });
      return { ...ref, existed: false, partsUploaded: 1, partsReused: 0 };
    }
    return this.putMultipart(file, ref, key, options);
  }

  private putMultipart(file: string, ref: BlobRef, key: string, options: PutFileOptions): Promise<PutResult> {
    return putMultipart(this.bucketView, file, ref, key, { ...options, partSize: this.partSize });
  }

  /** Abort a multipart upload, best effort (it may be gone already). */
  private abortUpload(key: string, uploadId: string): Promise<void> {
    return abortMultipartUpload(this.bucketView, key, uploadId);
  }

  /** Abort multipart uploads of blobs started more than `olderThanMs` ago (gc: abandoned uploads). */
  async abortStaleUploads(olderThanMs: number, dryRun = false): Promise<{ key: string; uploadId: string; initiated?: Date }[]> {
    const stale: { key: string; uploadId: string; initiated?: Date }[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const res = await this.send('ListMultipartUploads', () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: BLOB_PREFIX, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })),
      );
      for (const u of res.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        if (u.Initiated && Date.now() - u.Initiated.getTime() < olderThanMs) continue;
        stale.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated });
      }
      if (!res.IsTruncated) break;
      keyMarker = res.NextKeyMarker;
      uploadIdMarker = res.NextUploadIdMarker;
    }
    if (!dryRun) for (const u of stale) await this.abortUpload(u.key, u.uploadId);
    return stale;
  }

  async getBytes(sha256: string): Promise<Buffer> {
    const key = blobKey(sha256);
    const res = await this.getObject(key);
    if (!res) throw new StoreObjectNotFoundError(`blob ${sha256} is not in ${this.location}`, 'build or publish it first');
    const bytes = Buffer.from(await res.transformToByteArray());
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw new DigestMismatchError(sha256, actual, `${this.location}/${key}`);
    return bytes;
  }

  private async getObject(key: string, signal?: AbortSignal): Promise<(Readable & { transformToByteArray(): Promise<Uint8Array> }) | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      return res.Body as unknown as Readable & { transformToByteArray(): Promise<Uint8Array> };
    } catch (err) {
      if (signal?.aborted) throw new CancelledError(`GetObject ${key}`);
      if (isNotFound(err)) return undefined;
      throw this.wrap(`GetObject ${key}`, err);
    }
  }

  async getFile(sha256: string, dest: string, options: TransferOptions = {}): Promise<BlobRef> {
    const key = blobKey(sha256);
    const info = await this.head(key, options.signal);
    if (!info) throw new StoreObjectNotFoundError(`blob ${sha256} is not in ${this.location}`, 'build or publish it first');
    const body = await this.getObject(key, options.signal);
    if (!body) throw new StoreObjectNotFoundError(`blob ${sha256} is not in ${this.location}`, 'build or publish it first');
    const onAbort = () => body.destroy();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await writeVerified(body, dest, sha256, { ...options, total: info.size, where: `${this.location}/${key}` });
    } catch (err) {
      if (options.signal?.aborted) throw new CancelledError(`download of sha256:${sha256}`);
      throw this.wrap(`download of ${key}`, err);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      body.destroy();
    }
  }

  async verifyBlob(sha256: string, options: TransferOptions = {}): Promise<BlobRef> {
    const key = blobKey(sha256);
    const info = await this.head(key, options.signal);
    const body = info && (await this.getObject(key, options.signal));
    if (!info || !body) throw new StoreObjectNotFoundError(`blob ${sha256} is not in ${this.location}`, 'build or publish it first');
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const chunk of body) {
        throwIfAborted(options.signal, `verifying sha256:${sha256}`);
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
        options.onProgress?.({ phase: 'download', bytes: size, total: info.size });
      }
    } catch (err) {
      if (options.signal?.aborted) throw new CancelledError(`verifying sha256:${sha256}`);
      throw this.wrap(`GetObject ${key}`, err);
    } finally {
      body.destroy();
    }
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new DigestMismatchError(sha256, actual, `${this.location}/${key}`);
    return { sha256, size };
  }

  private async list(prefix: string): Promise<{ key: string; size: number; modified: Date }[]> {
    const out: { key: string; size: number; modified: Date }[] = [];
    let token: string | undefined;
    for (;;) {
      const res = await this.send(`ListObjectsV2 ${prefix}`, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })),
      );
      for (const o of res.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, modified: o.LastModified ?? new Date(0) });
      if (!res.IsTruncated || !res.NextContinuationToken) break;
      token = res.NextContinuationToken;
    }
    return out;
  }

  async listBlobs(): Promise<BlobInfo[]> {
    return (await this.list(BLOB_PREFIX))
      .map((o) => ({ sha256: o.key.slice(BLOB_PREFIX.length), size: o.size, modified: o.modified }))
      .filter((b) => SHA256_RE.test(b.sha256))
      .sort((a, b) => (a.sha256 < b.sha256 ? -1 : 1));
  }

  async deleteBlob(sha256: string): Promise<void> {
    const key = blobKey(sha256);
    await this.send(`DeleteObject ${key}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  async setRef(name: string, sha256: string): Promise<void> {
    const key = refKey(name);
    if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`);
    const body = Buffer.from(`${sha256}\n`);
    await this.putChecked(key, body, createHash('sha256').update(body).digest(), { contentType: 'text/plain' });
  }

  async getRef(name: string): Promise<string | undefined> {
    const body = await this.getObject(refKey(name));
    if (!body) return undefined;
    const value = Buffer.from(await body.transformToByteArray()).toString('utf8').trim();
    return SHA256_RE.test(value) ? value : undefined;
  }

  async listRefs(prefix = ''): Promise<string[]> {
    return (await this.list(`${REF_PREFIX}${prefix}`))
      .map((o) => o.key.slice(REF_PREFIX.length))
      .filter((name) => REF_RE.test(name))
      .sort();
  }

  async deleteRef(name: string): Promise<void> {
    const key = refKey(name);
    await this.send(`DeleteObject ${key}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  localPath(): undefined {
    return undefined;
  }

  /** Close the SDK's connections. */
  destroy(): void {
    this.client.destroy();
  }
}
