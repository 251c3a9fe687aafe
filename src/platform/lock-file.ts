/**
 * kubedos.lock, beside the spec: the SOURCE_DATE_EPOCH chosen once and, per image, the exact
 * package set (name, version, architecture, .deb sha256). Later builds install exactly that.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors';
import { lockInputsDigest, parseLock, serializeLock, type Lock } from '../foundry/lock';
import type { BasePlan } from '../foundry/plan';

export const LOCK_FILE_NAME = 'kubedos.lock';

export interface LockFile {
  lockVersion: 1;
  /** Every timestamp in every image; fixed when the lock was first written. */
  sourceDateEpoch: number;
  images: Record<string, Lock>;
}

export function lockPathFor(specFile: string): string {
  const abs = path.resolve(specFile);
  return path.join(existsSync(abs) && !abs.endsWith('.yaml') && !abs.endsWith('.yml') ? abs : path.dirname(abs), LOCK_FILE_NAME);
}

export function readLockFile(specFile: string): LockFile | undefined {
  const file = lockPathFor(specFile);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let data: LockFile;
  try {
    data = JSON.parse(text) as LockFile;
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON`, 'restore it from version control, or delete it and run `kubedos lock --update`', { cause: err });
  }
  if (data.lockVersion !== 1 || !Number.isInteger(data.sourceDateEpoch) || typeof data.images !== 'object') {
    throw new ConfigError(`${file}: not a kubedos lock file (lockVersion 1)`, 'delete it and run `kubedos lock --update`');
  }
  const images: Record<string, Lock> = {};
  for (const [name, lock] of Object.entries(data.images)) images[name] = parseLock(JSON.stringify(lock), `${file} images.${name}`);
  return { lockVersion: 1, sourceDateEpoch: data.sourceDateEpoch, images };
}

/** Stable bytes: sorted image names, each lock in its canonical form. */
export function serializeLockFile(lockFile: LockFile): string {
  const images = Object.fromEntries(
    Object.keys(lockFile.images).sort().map((name) => [name, JSON.parse(serializeLock(lockFile.images[name]!))]),
  );
  return `${JSON.stringify({ lockVersion: 1, sourceDateEpoch: lockFile.sourceDateEpoch, images }, null, 2)}\n`;
}

export async function writeLockFile(specFile: string, lockFile: LockFile): Promise<string> {
  const file = lockPathFor(specFile);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, serializeLockFile(lockFile));
  await fs.rename(tmp, file);
  return file;
}

/** The image's lock if it still matches the image's package inputs; a changed package list re-resolves. */
export function usableLock(lockFile: LockFile | undefined, image: string, base: BasePlan): Lock | undefined {
  const lock = lockFile?.images[image];
  return lock && lock.baseInputs === lockInputsDigest(base) ? lock : undefined;
}
