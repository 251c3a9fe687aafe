/**
 * The local content-addressed store under the state directory:
 * `blobs/sha256/<2 hex>/<64 hex>` (read-only files) and `refs/<name>` (a digest per file).
 * Every write goes to a temp file and is renamed into place, so readers never see a partial blob.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { DigestMismatchError, StoreError } from '../errors';
import { REF_RE, SHA256_RE, type ArtifactStore, type BlobRef } from './store';

/** sha256 of a file, streamed. */
export async function sha256OfFile(file: string): Promise<BlobRef> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }),
    new Writable({
      write(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        size += chunk.length;
        done();
      },
    }),
  );
  return { sha256: hash.digest('hex'), size };
}

export class LocalStore implements ArtifactStore {
  constructor(readonly root: string) {}

  private blobPath(sha256: string): string {
    if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`, 'digests are 64 lowercase hex characters');
    return path.join(this.root, 'blobs', 'sha256', sha256.slice(0, 2), sha256);
  }

  private async tmpPath(): Promise<string> {
    const dir = path.join(this.root, 'tmp');
    await fs.mkdir(dir, { recursive: true });
    return path.join(dir, randomUUID());
  }

  /** Move a verified temp file into place; a concurrent writer of the same digest is harmless. */
  private async commit(tmp: string, sha256: string): Promise<void> {
    const dest = this.blobPath(sha256);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.chmod(tmp, 0o444);
    await fs.rename(tmp, dest);
  }

  async putFile(file: string, options: { link?: boolean } = {}): Promise<BlobRef> {
    const ref = await sha256OfFile(file);
    if (await this.has(ref.sha256)) return ref;
    const tmp = await this.tmpPath();
    try {
      if (options.link) await fs.link(file, tmp).catch(() => fs.copyFile(file, tmp));
      else await fs.copyFile(file, tmp);
      await this.commit(tmp, ref.sha256);
    } finally {
      await fs.rm(tmp, { force: true });
    }
    return ref;
  }

  async putBytes(data: Buffer | string): Promise<BlobRef> {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (!(await this.has(sha256))) {
      const tmp = await this.tmpPath();
      await fs.writeFile(tmp, bytes);
      await this.commit(tmp, sha256);
    }
    return { sha256, size: bytes.length };
  }

  async has(sha256: string): Promise<boolean> {
    return fs.access(this.blobPath(sha256)).then(() => true, () => false);
  }

  async getBytes(sha256: string): Promise<Buffer> {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(this.blobPath(sha256));
    } catch (err) {
      throw new StoreError(`blob ${sha256} is not in the store at ${this.root}`, 'build or publish it first', { cause: err });
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw new DigestMismatchError(sha256, actual, this.blobPath(sha256));
    return bytes;
  }

  async setRef(name: string, sha256: string): Promise<void> {
    if (!REF_RE.test(name)) throw new StoreError(`"${name}" is not a valid ref name`, 'use lowercase words separated by /');
    if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`);
    const dest = path.join(this.root, 'refs', name);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    const tmp = await this.tmpPath();
    await fs.writeFile(tmp, `${sha256}\n`);
    await fs.rename(tmp, dest);
  }

  async getRef(name: string): Promise<string | undefined> {
    if (!REF_RE.test(name)) throw new StoreError(`"${name}" is not a valid ref name`);
    try {
      const value = (await fs.readFile(path.join(this.root, 'refs', name), 'utf8')).trim();
      return SHA256_RE.test(value) ? value : undefined;
    } catch {
      return undefined;
    }
  }

  localPath(sha256: string): string {
    return this.blobPath(sha256);
  }
}
