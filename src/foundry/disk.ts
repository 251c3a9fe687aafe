/**
 * The GPT disk. Per layer and disk size a BASE DISK is made once and cached under
 * `<cacheDir>/disks/`: the ESP (with the UKI) and the base root ext4 at their partition offsets,
 * no partition table. Every build then takes a sparse copy of it, writes its GPT with an sfdisk
 * script (label id and partition UUIDs derived from the input digest) and applies its payload to
 * the root filesystem in place (debugfs at the partition offset). A payload-only change
 * therefore costs one sparse copy, one sfdisk and one debugfs run.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { buildEsp, buildUki, kernelCmdline } from './boot';
import type { BuildContext } from './context';
import { makeBaseExt4 } from './ext4';
import { copySparse, createSparseFile, tempPathFor } from './files';
import { derivedUuid, sha256Hex } from './plan';
import { cpSparse } from './tools/cp';
import { sfdisk } from './tools/sfdisk';

const MiB = 1024 * 1024;
const SECTOR = 512;
export const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
/** Discoverable Partitions Specification: root partition (x86-64). */
export const ROOT_X86_64_TYPE = '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709';
/** ESP size. @default 100 MiB: room for a ~40 MB UKI. */
export const ESP_MIB = 100;

export interface DiskLayout {
  sizeBytes: number;
  labelId: string;
  esp: { offset: number; size: number; uuid: string };
  root: { offset: number; size: number; uuid: string };
}

/** ESP at 1 MiB; root fills the rest up to the last MiB (backup GPT). Ids from the input digest. */
export function diskLayout(sizeBytes: number, inputDigest: string): DiskLayout {
  const espOffset = 1 * MiB;
  const espSize = ESP_MIB * MiB;
  const rootOffset = espOffset + espSize;
  return {
    sizeBytes,
    labelId: derivedUuid(inputDigest, 'gpt-label'),
    esp: { offset: espOffset, size: espSize, uuid: derivedUuid(inputDigest, 'esp-partition') },
    root: { offset: rootOffset, size: sizeBytes - rootOffset - 1 * MiB, uuid: derivedUuid(inputDigest, 'root-partition') },
  };
}

/** Filesystem identifiers of a layer: shared by every image of the layer, so its boot files are cacheable. */
export function layerIds(layerDigest: string): { rootFsUuid: string; rootHashSeed: string; espVolumeId: string } {
  return {
    rootFsUuid: derivedUuid(layerDigest, 'root-fs'),
    rootHashSeed: derivedUuid(layerDigest, 'root-fs-hash-seed'),
    espVolumeId: sha256Hex(`${layerDigest}:esp-volume-id`).slice(0, 8),
  };
}

export function sfdiskScript(l: DiskLayout): string {
  const s = (bytes: number) => bytes / SECTOR;
  return [
    'label: gpt',
    `label-id: ${l.labelId}`,
    'unit: sectors',
    'sector-size: 512',
    `start=${s(l.esp.offset)}, size=${s(l.esp.size)}, type=${ESP_TYPE}, uuid=${l.esp.uuid}, name="esp"`,
    `start=${s(l.root.offset)}, size=${s(l.root.size)}, type=${ROOT_X86_64_TYPE}, uuid=${l.root.uuid}, name="root"`,
    '',
  ].join('\n');
}

/** Step: the cached base disk of the layer at the plan's size (made on a miss). */
export async function prepareBaseDisk(ctx: BuildContext): Promise<string> {
  const layer = ctx.layer!;
  const size = ctx.plan.image.diskSizeBytes;
  const dir = path.join(ctx.options.cacheDir, 'disks');
  // Keyed by the kernel command line too: it is in the disk's UKI, and a changed one must not reuse an old disk.
  const final = path.join(dir, `${layer.digest}-${size}-${sha256Hex(kernelCmdline('')).slice(0, 12)}.raw`);
  if (await fs.access(final).then(() => true, () => false)) {
    ctx.log.info({ disk: path.basename(final) }, 'base disk cache hit');
    return final;
  }
  await fs.mkdir(dir, { recursive: true });
  const geometry = diskLayout(size, layer.digest);
  const ids = layerIds(layer.digest);
  const uki = await buildUki(ctx, ids.rootFsUuid);
  const esp = await buildEsp(ctx, uki, ESP_MIB * 1024, ids.espVolumeId);
  const tmp = tempPathFor(final);
  try {
    await createSparseFile(tmp, size);
    await copySparse(esp, tmp, geometry.esp.offset);
    // The root filesystem is made in place at its offset: copying a 2 GB ext4 file in cost ~5 s.
    await makeBaseExt4(ctx, layer, tmp, geometry.root.size / 1024, ids.rootFsUuid, ids.rootHashSeed, geometry.root.offset);
    await fs.rename(tmp, final);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return final;
}

/** Step: a sparse copy of the base disk with this image's partition table. */
export async function partitionDisk(ctx: BuildContext, baseDisk: string, layout: DiskLayout): Promise<string> {
  const disk = path.join(ctx.workDir, 'disk.raw');
  await cpSparse(baseDisk, disk, { signal: ctx.options.signal });
  await sfdisk(disk, sfdiskScript(layout), { signal: ctx.options.signal });
  return disk;
}
