/** qemu-img: converts and checks disk images. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface ConvertArgs {
  source: string;
  sourceFormat: 'raw' | 'qcow2' | 'vmdk';
  dest: string;
  destFormat: 'raw' | 'qcow2' | 'vmdk' | 'vpc';
  /** `-o` creation options, e.g. `{ subformat: 'streamOptimized' }`. */
  options?: Record<string, string>;
  /**
   * Destination cache mode (`-t`). `unsafe` skips the final flush: artifacts are published by
   * rename without fsync anyway, and the mode never changes the bytes written. @default qemu-img's (writeback)
   */
  cache?: 'unsafe' | 'writeback' | 'none';
  /** Convert only these bytes of a raw source (qemu's raw driver `offset`/`size`). */
  sourceRange?: { offset: number; size: number };
}

/** A QemuOpts value: commas are doubled, so a path cannot add options. */
const optValue = (v: string) => v.replace(/,/g, ',,');

export function qemuImgConvertArgv(a: ConvertArgs): string[] {
  const argv = ['qemu-img', 'convert', '-q'];
  if (a.cache) argv.push('-t', a.cache);
  let source = a.source;
  if (a.sourceRange) {
    if (a.sourceFormat !== 'raw') throw new TypeError('qemu-img convert: a source range needs a raw source');
    argv.push('--image-opts');
    source = `driver=raw,offset=${a.sourceRange.offset},size=${a.sourceRange.size},file.driver=file,file.filename=${optValue(a.source)}`;
  } else {
    argv.push('-f', a.sourceFormat);
  }
  argv.push('-O', a.destFormat);
  const opts = Object.entries(a.options ?? {}).map(([k, v]) => `${k}=${optValue(v)}`);
  if (opts.length > 0) argv.push('-o', opts.join(','));
  argv.push(source, a.dest);
  return argv;
}

export function qemuImgConvert(a: ConvertArgs, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuImgConvertArgv(a), options);
}

export function qemuImgCheckArgv(image: string, format: string): string[] {
  return ['qemu-img', 'check', '-f', format, '--output=json', image];
}

/** Resolves with the JSON report; rejects (ToolFailedError) when the image has errors. */
export function qemuImgCheck(image: string, format: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuImgCheckArgv(image, format), options);
}

export function qemuImgInfoArgv(image: string, format: string): string[] {
  return ['qemu-img', 'info', '-f', format, '--output=json', image];
}

export function qemuImgInfo(image: string, format: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuImgInfoArgv(image, format), options);
}

/**
 * A qcow2 overlay on a backing image (a linked clone): made in milliseconds whatever the base's
 * size; the base is only read. The backing path is stored in the overlay as given (use absolute).
 */
export function qemuImgCreateOverlayArgv(overlay: string, backing: string, backingFormat: 'qcow2' | 'raw' = 'qcow2'): string[] {
  return ['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', backingFormat, '-b', backing, overlay];
}

export function qemuImgCreateOverlay(overlay: string, backing: string, backingFormat: 'qcow2' | 'raw' = 'qcow2', options: ToolOptions = {}): Promise<RunResult> {
  return runTool(qemuImgCreateOverlayArgv(overlay, backing, backingFormat), options);
}
