/**
 * A streamOptimized VMDK written by several qemu-img processes at once, byte for byte the file a
 * single `qemu-img convert -O vmdk -o subformat=streamOptimized` writes.
 *
 * Why: qemu-img compresses a compressed target's grains one after another on one thread (they
 * must land in order), so a 2 GiB disk takes ~28 s here whatever the cores.
 *
 * Why the bytes stay the same: qemu-img's streamOptimized file is its header, the descriptor, the
 * redundant and the primary grain directory with every grain table preallocated (all sized by the
 * capacity alone), then each grain that is not all zeros, in ascending order, as a marker (its
 * LBA, its compressed size) and its zlib stream, padded to a sector. A grain is compressed on its
 * own, so its bytes depend only on its 64 KiB. Hence: the metadata comes from converting an empty
 * disk of the same size under the same file name (the descriptor names it); the grains from
 * converting disjoint, grain-aligned ranges of the disk in parallel (their LBAs relative to the
 * range); they are concatenated in order with their LBAs made absolute, and both sets of grain
 * tables point at them; the file ends at least a whole grain past the last grain's start, as
 * qemu-img's does (it reserves a grain per allocation). Anything else in a part (a metadata
 * marker, a grain out of order) is an error, not a guess: test/unit/vmdk-stream.test.ts compares
 * against qemu-img's own file.
 */
import * as fs from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { BuildFailedError } from '../errors';
import { createSparseFile, fileDataExtents, tempPathFor } from './files';
import { qemuImgConvert } from './tools/qemu-img';

const SECTOR = 512;
const MARKER_BYTES = 12;
const READ_CHUNK = 8 * 1024 * 1024;
/** Header flags qemu-img sets on a streamOptimized extent: compressed grains, markers. */
const FLAG_COMPRESSED = 1 << 16;
const FLAG_MARKERS = 1 << 17;

export interface StreamOptimizedOptions {
  /** `-o` options besides the subformat (e.g. adapter_type). */
  createOptions?: Record<string, string>;
  /** How many qemu-img processes. @default the machine's available parallelism */
  parts?: number;
  signal?: AbortSignal;
}

interface SparseHeader {
  grainSectors: number;
  gtesPerGt: number;
  redundantGdSector: number;
  gdSector: number;
  overheadSectors: number;
}

function readHeader(buf: Buffer, name: string): SparseHeader {
  if (buf.toString('latin1', 0, 4) !== 'KDMV') throw new BuildFailedError(`${name}: not a sparse vmdk extent (no KDMV magic)`);
  const flags = buf.readUInt32LE(8);
  if ((flags & FLAG_COMPRESSED) === 0 || (flags & FLAG_MARKERS) === 0) throw new BuildFailedError(`${name}: not a streamOptimized extent (flags ${flags.toString(16)})`);
  const header = {
    grainSectors: Number(buf.readBigUInt64LE(20)),
    gtesPerGt: buf.readUInt32LE(44),
    redundantGdSector: Number(buf.readBigUInt64LE(48)),
    gdSector: Number(buf.readBigUInt64LE(56)),
    overheadSectors: Number(buf.readBigUInt64LE(64)),
  };
  if (header.grainSectors === 0 || header.gtesPerGt === 0 || header.overheadSectors === 0) throw new BuildFailedError(`${name}: unusable sparse extent header ${JSON.stringify(header)}`);
  return header;
}

/** Grain-aligned cut points that give each part about the same number of allocated bytes. */
export function balancedCuts(extents: [number, number][], size: number, parts: number, align: number): number[] {
  const total = extents.reduce((n, [s, e]) => n + (e - s), 0);
  const cuts: number[] = [];
  let seen = 0;
  for (const [start, end] of extents) {
    for (let k = cuts.length + 1; k < parts; k++) {
      const want = (total * k) / parts;
      if (seen + (end - start) < want) break;
      const at = Math.floor((start + (want - seen)) / align) * align;
      if (at > (cuts.at(-1) ?? 0) && at < size) cuts.push(at);
    }
    seen += end - start;
  }
  return cuts;
}

/** Sequential reads of a file through one large buffer. */
class ChunkReader {
  private buf = Buffer.alloc(0);
  private bufPos = 0;
  constructor(private readonly fh: fs.FileHandle) {}

  /** `n` bytes at `pos` (fewer at the end of the file), valid until the next call. */
  async at(pos: number, n: number): Promise<Buffer> {
    if (pos < this.bufPos || pos + n > this.bufPos + this.buf.length) {
      const chunk = Buffer.alloc(Math.max(READ_CHUNK, n));
      const { bytesRead } = await this.fh.read(chunk, 0, chunk.length, pos);
      this.buf = chunk.subarray(0, bytesRead);
      this.bufPos = pos;
    }
    return this.buf.subarray(pos - this.bufPos, pos - this.bufPos + n);
  }
}

/** Sequential writes through one large buffer. */
class ChunkWriter {
  private readonly buf = Buffer.alloc(READ_CHUNK);
  private used = 0;
  constructor(
    private readonly fh: fs.FileHandle,
    public pos: number,
  ) {}

  async write(bytes: Buffer): Promise<void> {
    if (this.used + bytes.length > this.buf.length) await this.flush();
    if (bytes.length > this.buf.length) {
      await this.fh.write(bytes, 0, bytes.length, this.pos);
    } else {
      bytes.copy(this.buf, this.used);
      this.used += bytes.length;
    }
    this.pos += bytes.length;
  }

  async flush(): Promise<void> {
    if (this.used > 0) await this.fh.write(this.buf, 0, this.used, this.pos - this.used);
    this.used = 0;
  }
}

/** Append a part's grains, LBAs shifted by `firstLba`, recording each grain's (LBA, sector in the output). */
async function appendGrains(part: string, firstLba: number, out: ChunkWriter, grains: [number, number][], signal?: AbortSignal): Promise<void> {
  const name = path.basename(part);
  const fh = await fs.open(part, 'r');
  try {
    const reader = new ChunkReader(fh);
    const header = readHeader(await reader.at(0, SECTOR), name);
    const { size } = await fh.stat();
    let lastLba = -1;
    for (let pos = header.overheadSectors * SECTOR; pos < size; ) {
      signal?.throwIfAborted();
      const marker = await reader.at(pos, MARKER_BYTES);
      if (marker.length < MARKER_BYTES) throw new BuildFailedError(`${name}: truncated grain marker at byte ${pos}`);
      const lba = Number(marker.readBigUInt64LE(0));
      const length = marker.readUInt32LE(8);
      if (length === 0) {
        // qemu-img leaves the file at least a whole grain past the last grain's start: zeros.
        const tail = await reader.at(pos, size - pos);
        if (size - pos > header.grainSectors * SECTOR || tail.some((b) => b !== 0)) throw new BuildFailedError(`${name}: a metadata marker at byte ${pos}: not the streamOptimized layout this writer knows`);
        break;
      }
      if (lba <= lastLba || lba % header.grainSectors !== 0) throw new BuildFailedError(`${name}: grain at LBA ${lba} after ${lastLba}: not in ascending grain order`);
      lastLba = lba;
      const data = await reader.at(pos, MARKER_BYTES + length);
      if (data.length < MARKER_BYTES + length) throw new BuildFailedError(`${name}: truncated grain at byte ${pos}`);
      const record = Buffer.alloc(Math.ceil((MARKER_BYTES + length) / SECTOR) * SECTOR);
      data.copy(record);
      record.writeBigUInt64LE(BigInt(lba + firstLba), 0);
      grains.push([lba + firstLba, out.pos / SECTOR]);
      await out.write(record);
      pos += record.length;
    }
  } finally {
    await fh.close();
  }
}

/** Point both sets of grain tables of the metadata region at the grains. */
function fillGrainTables(region: Buffer, header: SparseHeader, grains: [number, number][], name: string): void {
  for (const [lba, sector] of grains) {
    const grain = lba / header.grainSectors;
    const table = Math.floor(grain / header.gtesPerGt);
    const entry = grain % header.gtesPerGt;
    for (const gd of [header.redundantGdSector, header.gdSector]) {
      const gtSector = region.readUInt32LE(gd * SECTOR + table * 4);
      const at = gtSector * SECTOR + entry * 4;
      if (gtSector === 0 || at + 4 > region.length) throw new BuildFailedError(`${name}: grain table ${table} is not preallocated in the metadata`);
      region.writeUInt32LE(sector, at);
    }
  }
}

/**
 * Write `out` from the raw disk `raw`. `out`'s name goes into the descriptor, as with qemu-img;
 * the file is written under a temporary name beside it and renamed when complete.
 */
export async function writeStreamOptimizedVmdk(raw: string, out: string, options: StreamOptimizedOptions = {}): Promise<void> {
  // One part failing stops the others.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const createOptions = { subformat: 'streamOptimized', ...options.createOptions };
  const { size } = await fs.stat(raw);
  const work = await fs.mkdtemp(path.join(path.dirname(out), `.${path.basename(out)}.parts-`));
  try {
    // The metadata: an empty disk of the same size, converted under the final file name.
    const emptyRaw = path.join(work, 'empty.raw');
    const meta = path.join(work, path.basename(out));
    await createSparseFile(emptyRaw, size);
    const convert = (source: string, dest: string, sourceRange?: { offset: number; size: number }) =>
      qemuImgConvert({ source, sourceFormat: 'raw', sourceRange, dest, destFormat: 'vmdk', options: createOptions, cache: 'unsafe' }, { signal });
    await convert(emptyRaw, meta);
    const region = await fs.readFile(meta);
    const header = readHeader(region, path.basename(out));
    if (region.length !== header.overheadSectors * SECTOR) throw new BuildFailedError(`${path.basename(out)}: the empty disk's vmdk is ${region.length} bytes, not its ${header.overheadSectors}-sector metadata`);

    // The grains: disjoint ranges converted at once.
    const grainBytes = header.grainSectors * SECTOR;
    const parts = Math.max(1, options.parts ?? availableParallelism());
    const cuts = size % grainBytes === 0 ? balancedCuts(await fileDataExtents(raw, size, signal), size, parts, grainBytes) : [];
    const bounds = [0, ...cuts, size];
    const ranges = bounds.slice(0, -1).map((offset, i) => ({ offset, size: bounds[i + 1]! - offset, file: path.join(work, `part-${i}.vmdk`) }));
    await Promise.all(ranges.map((r) => (ranges.length === 1 ? convert(raw, r.file) : convert(raw, r.file, r)))).catch((err: unknown) => {
      stop.abort();
      throw err;
    });

    const tmp = tempPathFor(out);
    try {
      const fh = await fs.open(tmp, 'w');
      try {
        const writer = new ChunkWriter(fh, region.length);
        const grains: [number, number][] = [];
        for (const r of ranges) {
          await appendGrains(r.file, r.offset / SECTOR, writer, grains, signal);
          await fs.rm(r.file);
        }
        await writer.flush();
        fillGrainTables(region, header, grains, path.basename(out));
        await fh.write(region, 0, region.length, 0);
        // As qemu-img: the file ends a whole grain past the last grain's start at least.
        const last = grains.at(-1);
        await fh.truncate(last ? Math.max(writer.pos, last[1] * SECTOR + grainBytes) : writer.pos);
      } finally {
        await fh.close();
      }
      await fs.rename(tmp, out);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
