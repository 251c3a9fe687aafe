/**
 * The local content-addressed store under the state directory:
 * `blobs/sha256/<2 hex>/<64 hex>` (read-only files) and `refs/<name>` (a digest per file).
 * Every write goes to a temp file and is renamed into place, so readers never see a partial blob.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { DigestMismatchError, StoreError, StoreObjectNotFoundError } from '../errors';
import { REF_RE, SHA256_RE, type ArtifactStore, type BlobInfo, type BlobRef, type PutFileOptions, type PutResult, type TransferOptions } from './store';
import { sha256OfFile, throwIfAborted, writeVerified } from './transfer';

export { sha256OfFile } from './transfer';

export class LocalStore implements ArtifactStore {
  constructor(readonly root: string) {}

  get location(): string {
    return this.root;
  }

  private blobPath(sha256: string): string {
    if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`, 'digests are 64 lowercase hex characters');
    return path.join(this.root, 'blobs', 'sha256', sha256.slice(0, 2), sha256);
  }

  private refPath(name: string): string {
    if (!REF_RE.test(name)) throw new StoreError(`"${name}" is not a valid ref name`, 'use lowercase words separated by /');
    return path.join(this.root, 'refs', name);
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
    // The blob's age is its time in the store (gc's grace period), not the source file's.
    const now = new Date();
    await fs.utimes(tmp, now, now).catch(() => undefined);
    await fs.rename(tmp, dest);
  }

  async putFile(file: string, options: PutFileOptions = {}): Promise<PutResult> {
    const ref = await sha256OfFile(file, options);
    if (options.expectSha256 && ref.sha256 !== options.expectSha256) throw new DigestMismatchError(options.expectSha256, ref.sha256, file);
    if (await this.has(ref.sha256)) return { ...ref, existed: true };
    throwIfAborted(options.signal, `storing ${file}`);
    if (options.link) {
      const tmp = await this.tmpPath();
      try {
        await fs.link(file, tmp);
        await this.commit(tmp, ref.sha256);
        return { ...ref, existed: false };
      } catch {
        /* another filesystem: copy below */
      } finally {
        await fs.rm(tmp, { force: true });
      }
    }
    // Copy through a verified, sparse-preserving write: the blob is what was hashed, or nothing.
    const dest = this.blobPath(ref.sha256);
    await writeVerified(createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }), dest, ref.sha256, {
      signal: options.signal,
      total: ref.size,
      where: `${file} (changed while it was being stored)`,
    });
    await fs.chmod(dest, 0o444);
    return { ...ref, existed: false };
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
      throw new StoreObjectNotFoundError(`blob ${sha256} is not in the store at ${this.root}`, 'build or publish it first', { cause: err });
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw new DigestMismatchError(sha256, actual, this.blobPath(sha256));
    return bytes;
  }

  async getFile(sha256: string, dest: string, options: TransferOptions = {}): Promise<BlobRef> {
    const src = this.blobPath(sha256);
    let size: number;
    try {
      size = (await fs.stat(src)).size;
    } catch (err) {
      throw new StoreObjectNotFoundError(`blob ${sha256} is not in the store at ${this.root}`, 'build or publish it first', { cause: err });
    }
    return writeVerified(createReadStream(src, { highWaterMark: 4 * 1024 * 1024 }), dest, sha256, { ...options, total: size, where: src });
  }

  async verifyBlob(sha256: string, options: TransferOptions = {}): Promise<BlobRef> {
    const src = this.blobPath(sha256);
    if (!(await this.has(sha256))) throw new StoreObjectNotFoundError(`blob ${sha256} is not in the store at ${this.root}`, 'build or publish it first');
    const ref = await sha256OfFile(src, options);
    if (ref.sha256 !== sha256) throw new DigestMismatchError(sha256, ref.sha256, src);
    return ref;
  }

  async listBlobs(): Promise<BlobInfo[]> {
    const base = path.join(this.root, 'blobs', 'sha256');
    const out: BlobInfo[] = [];
    for (const shard of await fs.readdir(base).catch(() => [] as string[])) {
      for (const name of await fs.readdir(path.join(base, shard)).catch(() => [] as string[])) {
        if (!SHA256_RE.test(name) || name.slice(0, 2) !== shard) continue;
        const st = await fs.stat(path.join(base, shard, name)).catch(() => undefined);
        if (st?.isFile()) out.push({ sha256: name, size: st.size, modified: st.mtime });
      }
    }
    return out.sort((a, b) => (a.sha256 < b.sha256 ? -1 : 1));
  }

  async deleteBlob(sha256: string): Promise<void> {
    await fs.rm(this.blobPath(sha256), { force: true });
  }

  async setRef(name: string, sha256: string): Promise<void> {
    const dest = this.refPath(name);
    if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    const tmp = await this.tmpPath();
    await fs.writeFile(tmp, `${sha256}\n`);
    await fs.rename(tmp, dest);
  }

  async getRef(name: string): Promise<string | undefined> {
    try {
      const value = (await fs.readFile(this.refPath(name), 'utf8')).trim();
      return SHA256_RE.test(value) ? value : undefined;
    } catch (err) {
      if (err instanceof StoreError) throw err;
      return undefined;
    }
  }

  async listRefs(prefix = ''): Promise<string[]> {
    const base = path.join(this.root, 'refs');
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const name = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) await walk(path.join(dir, entry.name), name);
        else if (entry.isFile() && REF_RE.test(name) && name.startsWith(prefix)) out.push(name);
      }
    };
    await walk(base, '');
    return out.sort();
  }

  async deleteRef(name: string): Promise<void> {
    await fs.rm(this.refPath(name), { force: true });
  }

  localPath(sha256: string): string {
    return this.blobPath(sha256);
  }
}
