/**
 * What the layer's kernel can load early: the modules built into the kernel (modules.builtin) and
 * the modules inside its initramfs (listed without unpacking it to disk: the cpio archives are
 * parsed in memory, after an uncompressed early archive if any). Formats whose boot depends on a
 * driver (virtio-mmio under Firecracker, NVMe on AWS Nitro, Hyper-V storage on Azure) check here
 * that the image can really find its root disk, and fail the build otherwise.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { BuildFailedError } from '../errors';
import type { BuildContext, Layer } from './context';
import { xzDecompress } from './tools/xz';
import { zstdDecompress } from './tools/zstd';

/** Module name as the kernel knows it: file name without .ko[.xz|.zst|.gz], `-` read as `_`. */
export function moduleName(file: string): string | undefined {
  const m = /([^/]+)\.ko(?:\.(?:xz|zst|gz))?$/.exec(file);
  return m ? m[1]!.replace(/-/g, '_') : undefined;
}

const CPIO_MAGICS = ['070701', '070702'];
const TRAILER = 'TRAILER!!!';

/**
 * Parse concatenated newc cpio archives from `buf` at `pos`: the member names, and the offset
 * where something other than a cpio archive (or zero padding) starts (`buf.length` at the end).
 */
export function parseNewc(buf: Buffer, pos = 0): { names: string[]; end: number } {
  const names: string[] = [];
  let p = pos;
  for (;;) {
    while (p < buf.length && buf[p] === 0) p++;
    if (p + 110 > buf.length || !CPIO_MAGICS.includes(buf.toString('latin1', p, p + 6))) return { names, end: p };
    for (;;) {
      if (!CPIO_MAGICS.includes(buf.toString('latin1', p, p + 6))) throw new BuildFailedError(`initramfs: corrupt cpio header at offset ${p}`);
      const field = (i: number) => parseInt(buf.toString('latin1', p + 6 + i * 8, p + 14 + i * 8), 16);
      const fileSize = field(6);
      const nameSize = field(11);
      const name = buf.toString('utf8', p + 110, p + 110 + nameSize - 1);
      p = Math.ceil((p + 110 + nameSize) / 4) * 4;
      p = Math.ceil((p + fileSize) / 4) * 4;
      if (p > buf.length) throw new BuildFailedError('initramfs: truncated cpio archive');
      if (name === TRAILER) break;
      names.push(name);
    }
  }
}

/** Member names of an initramfs image (early uncompressed cpio + gzip/xz/zstd main archive). */
export async function initrdMembers(initrd: string, scratchDir: string, signal?: AbortSignal): Promise<string[]> {
  let buf = await fs.readFile(initrd);
  const names: string[] = [];
  await fs.mkdir(scratchDir, { recursive: true });
  try {
    for (let round = 0; round < 4; round++) {
      const { names: found, end } = parseNewc(buf);
      names.push(...found);
      if (end >= buf.length) return names;
      const rest = buf.subarray(end);
      if (rest[0] === 0x1f && rest[1] === 0x8b) {
        buf = gunzipSync(rest);
      } else if (rest.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) {
        const input = path.join(scratchDir, 'initrd.zst');
        const output = path.join(scratchDir, 'initrd.cpio');
        await fs.writeFile(input, rest);
        await zstdDecompress(input, output, { signal });
        buf = await fs.readFile(output);
      } else if (rest.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
        const input = path.join(scratchDir, 'initrd.cpio.xz');
        await fs.writeFile(input, rest);
        await xzDecompress(input, { signal });
        buf = await fs.readFile(path.join(scratchDir, 'initrd.cpio'));
      } else {
        throw new BuildFailedError(`initramfs ${path.basename(initrd)}: unrecognised data at offset ${end}`, 'KubeDos reads cpio archives compressed with gzip, xz or zstd');
      }
    }
    throw new BuildFailedError(`initramfs ${path.basename(initrd)}: too many nested archives`);
  } finally {
    await fs.rm(scratchDir, { recursive: true, force: true });
  }
}

export interface EarlyModules {
  kernelVersion: string;
  /** Built into the kernel image. */
  builtin: Set<string>;
  /** Loadable modules shipped in the root filesystem. */
  installed: Set<string>;
  /** Loadable modules inside the initramfs. */
  initrd: Set<string>;
}

const cache = new WeakMap<BuildContext, Promise<EarlyModules>>();

async function readEarlyModules(ctx: BuildContext, layer: Layer): Promise<EarlyModules> {
  const kernelVersion = path.basename(layer.kernel).replace(/^vmlinuz-/, '');
  const modDir = path.join(layer.rootfs, 'usr/lib/modules', kernelVersion);
  const lines = async (file: string) => (await fs.readFile(path.join(modDir, file), 'utf8').catch(() => '')).split('\n');
  const names = (list: string[]) => new Set(list.map((l) => moduleName(l.split(':')[0]!.trim())).filter((n): n is string => n !== undefined));
  const installed = names(await lines('modules.dep'));
  if (installed.size === 0) throw new BuildFailedError(`the layer has no modules.dep for kernel ${kernelVersion}`);
  const builtin = names(await lines('modules.builtin'));
  const members = await initrdMembers(layer.initrd, path.join(ctx.workDir, 'initrd-members'), ctx.options.signal);
  const initrd = names(members);
  return { kernelVersion, builtin, installed, initrd };
}

/** The layer's early-boot modules, read once per build. */
export function earlyModules(ctx: BuildContext): Promise<EarlyModules> {
  let found = cache.get(ctx);
  if (!found) {
    found = readEarlyModules(ctx, ctx.layer!);
    cache.set(ctx, found);
  }
  return found;
}

/**
 * Fail the build unless every module of `modules` is built into the kernel or in the initramfs
 * (`purpose` names who needs them, e.g. "ami: AWS Nitro (ENA network, NVMe storage)").
 */
export async function requireEarlyModules(ctx: BuildContext, modules: readonly string[], purpose: string): Promise<EarlyModules> {
  const found = await earlyModules(ctx);
  const missing = modules.filter((m) => !found.builtin.has(m) && !found.initrd.has(m));
  if (missing.length > 0) {
    const absent = missing.filter((m) => !found.installed.has(m));
    throw new BuildFailedError(
      `${purpose}: the initramfs of kernel ${found.kernelVersion} lacks ${missing.join(', ')}${absent.length ? ` (not in the image at all: ${absent.join(', ')})` : ''}`,
      'the layer\'s initramfs carries every format\'s early-boot modules (src/foundry/formats/early-boot.ts) and base.initramfsModules; a module the kernel package does not ship cannot be added',
    );
  }
  ctx.log.info({ purpose, modules: modules.join(',') }, 'early-boot modules present');
  return found;
}
