/**
 * A fixed VHD uploaded as an Azure page blob, sparse and resumable:
 *
 * - the blob is created at the file's size (a new page blob reads as zeros), its metadata naming
 *   the VHD's sha256; creating never overwrites a blob another worker is filling (If-None-Match);
 * - the file is read by data extents (SEEK_DATA/SEEK_HOLE: holes are never read) in 4 MiB
 *   windows, the maximum of one Put Page; within a window only runs of non-zero 512-byte pages
 *   are sent (runs closer than 64 KiB as one), each with its Content-MD5, so zero regions cost
 *   nothing;
 * - what the blob already holds is learnt from its page ranges (Put Page is atomic: a range
 *   present was written completely), so a retried upload sends only the runs still missing;
 * - last, the metadata says the blob is complete; a complete blob of the same sha256 is a no-op.
 *
 * Runs are cut by a deterministic rule (window, then non-zero pages), so every attempt cuts the
 * same runs and a run is either present or not.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { PageBlobClient } from '@azure/storage-blob';
import { parseExtents } from '../../foundry/files';
import { dataExtents } from '../../foundry/tools/data-extents';
import type { DriverContext } from '../driver';
import { isAzureNotFound } from './failures';

/** Azure's page size: every write is whole pages. */
export const PAGE = 512;
/** The largest Put Page (4 MiB). */
export const WINDOW = 4 * 1024 * 1024;
/** Metadata keys (C# identifiers, as Azure requires). */
export const META_SHA256 = 'kubedos_sha256';
export const META_COMPLETE = 'kubedos_complete';

const ZERO_PAGE = Buffer.alloc(PAGE);
const ZERO_WINDOW = Buffer.alloc(WINDOW);

/** [start, end) byte ranges, ascending and disjoint. */
export type Ranges = Array<[number, number]>;

/**
 * Zero gaps shorter than this between two runs of data are sent rather than skipped: a Put Page
 * costs a round trip and a transaction, 64 KiB of zeros cost nothing to the blob's content.
 */
export const MERGE_GAP = 64 * 1024;

/**
 * Runs of non-zero pages in `buf` (a window read at `base`), as absolute [start, end); runs closer
 * than `gap` bytes are one run (the zero pages between them are sent).
 */
export function nonZeroRuns(buf: Buffer, base: number, gap = MERGE_GAP): Ranges {
  if (buf.length === WINDOW && buf.equals(ZERO_WINDOW)) return [];
  const runs: Ranges = [];
  let start = -1;
  for (let off = 0; off < buf.length; off += PAGE) {
    const end = Math.min(off + PAGE, buf.length);
    const zero = end - off === PAGE ? ZERO_PAGE.equals(buf.subarray(off, end)) : buf.subarray(off, end).every((b) => b === 0);
    if (!zero && start < 0) start = off;
    if (zero && start >= 0) {
      runs.push([base + start, base + off]);
      start = -1;
    }
  }
  if (start >= 0) runs.push([base + start, base + buf.length]);
  const merged: Ranges = [];
  for (const r of runs) {
    const last = merged[merged.length - 1];
    if (last && r[0] - last[1] < gap) last[1] = r[1];
    else merged.push(r);
  }
  return merged;
}

/** Whether [start, end) lies inside one of the sorted, merged `ranges`. */
export function covered(ranges: Ranges, start: number, end: number): boolean {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = ranges[mid]!;
    if (b <= start) lo = mid + 1;
    else if (a > start) hi = mid - 1;
    else return end <= b;
  }
  return false;
}

/** Page ranges (inclusive ends, as Azure lists them) as sorted, merged [start, end). */
export function mergeRanges(listed: Iterable<{ start: number; end: number }>): Ranges {
  const sorted = [...listed].map(({ start, end }) => [start, end + 1] as [number, number]).sort((x, y) => x[0] - y[0]);
  const out: Ranges = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

export interface PageBlobUploadResult {
  /** Bytes sent in this call. */
  sent: number;
  /** Non-zero bytes the blob already held (a resumed upload). */
  present: number;
  /** Zero bytes never sent. */
  skippedZero: number;
  /** The blob was already complete: nothing was read or sent. */
  complete: boolean;
}

export interface PageBlobUploadOptions {
  /** Put Page requests in flight at once. @default 8 */
  parallel?: number;
  /** Called after each window (heartbeats). */
  onProgress?: (done: number, total: number) => void;
}

/** Upload `file` (its sha256 and size known, size a multiple of 512) to the page blob, sparse and resumable. */
export async function uploadPageBlob(blob: PageBlobClient, file: { path: string; sha256: string; size: number }, ctx: DriverContext, options: PageBlobUploadOptions = {}): Promise<PageBlobUploadResult> {
  if (file.size % PAGE !== 0) throw new TypeError(`a page blob holds whole 512-byte pages; ${file.path} is ${file.size} bytes`);
  const abortSignal = ctx.signal;
  let props = await blob.getProperties({ abortSignal }).catch((err: unknown) => {
    if (isAzureNotFound(err)) return undefined;
    throw err;
  });
  if (props && props.metadata?.[META_SHA256] === file.sha256 && props.metadata?.[META_COMPLETE] === 'true' && props.contentLength === file.size && props.blobType === 'PageBlob') {
    return { sent: 0, present: file.size, skippedZero: 0, complete: true };
  }
  if (props && (props.contentLength !== file.size || props.metadata?.[META_SHA256] !== file.sha256 || props.blobType !== 'PageBlob')) {
    // Not the upload of this VHD (a name collision, or another blob type): start afresh.
    await blob.deleteIfExists({ abortSignal });
    props = undefined;
  }
  if (!props) {
    try {
      await blob.create(file.size, { metadata: { [META_SHA256]: file.sha256 }, conditions: { ifNoneMatch: '*' }, abortSignal });
    } catch (err) {
      // Another worker made it meanwhile: share its progress.
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
    }
  }
  const listed: Array<{ start: number; end: number }> = [];
  for await (const r of blob.listPageRanges(0, file.size, { abortSignal })) listed.push({ start: r.start, end: r.end });
  const present = mergeRanges(listed);

  const extents = parseExtents((await dataExtents(file.path, { signal: abortSignal })).stdout, file.size);
  const fh = await fs.open(file.path, 'r');
  const result: PageBlobUploadResult = { sent: 0, present: 0, skippedZero: 0, complete: false };
  const inFlight = new Set<Promise<void>>();
  const parallel = options.parallel ?? 8;
  let failure: unknown;
  const send = (body: Buffer, offset: number) => {
    const p = blob
      .uploadPages(body, offset, body.length, { abortSignal, transactionalContentMD5: createHash('md5').update(body).digest() })
      .then(() => {
        result.sent += body.length;
      })
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    return p;
  };
  try {
    // Windows are aligned to WINDOW from the start of the file, whatever the extents.
    const windows = new Set<number>();
    for (const [a, b] of extents) for (let w = Math.floor(a / WINDOW) * WINDOW; w < b; w += WINDOW) windows.add(w);
    let done = 0;
    for (const w of [...windows].sort((x, y) => x - y)) {
      if (failure) break;
      const len = Math.min(WINDOW, file.size - w);
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, w + got);
        if (bytesRead === 0) throw new Error(`${file.path} shrank while being uploaded`);
        got += bytesRead;
      }
      for (const [a, b] of nonZeroRuns(buf, w)) {
        if (covered(present, a, b)) {
          result.present += b - a;
          continue;
        }
        while (inFlight.size >= parallel) await Promise.race(inFlight);
        if (failure) break;
        void send(buf.subarray(a - w, b - w), a);
      }
      done = w + len;
      options.onProgress?.(done, file.size);
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
  } finally {
    await Promise.allSettled(inFlight);
    await fh.close();
  }
  result.skippedZero = file.size - result.sent - result.present;
  await blob.setMetadata({ [META_SHA256]: file.sha256, [META_COMPLETE]: 'true' }, { abortSignal });
  return result;
}
