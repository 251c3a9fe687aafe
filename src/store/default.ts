/** The store and build directories of this state directory (the embedded default). */
import path from 'node:path';
import { stateDir } from '../config/paths';
import { LocalStore } from './local';
import { S3Store, s3ConfigFromEnv } from './s3';
import type { ArtifactStore } from './store';

export function defaultStore(): LocalStore {
  return new LocalStore(path.join(stateDir(), 'store'));
}

/**
 * The store builds publish to and deploys fetch from: S3 when KUBEDOS_S3_BUCKET is set (endpoint,
 * region, path style and credentials from KUBEDOS_S3_* and AWS_*, see s3ConfigFromEnv), else the
 * local default. Used by the CLI and by every worker.
 */
export function configuredStore(environment: NodeJS.ProcessEnv = process.env): ArtifactStore {
  const s3 = s3ConfigFromEnv(environment);
  return s3 ? new S3Store(s3) : defaultStore();
}

/** Release a store's connections (S3); a no-op for the local store. */
export function closeStore(store: ArtifactStore): void {
  if (store instanceof S3Store) store.destroy();
}

/** Run `fn` with `store`, then release the store's connections (closeStore), whatever happens. */
export async function withStore<T>(store: ArtifactStore, fn: (store: ArtifactStore) => Promise<T>): Promise<T> {
  try {
    return await fn(store);
  } finally {
    closeStore(store);
  }
}

export function defaultBuildDirs(): { cacheDir: string; debCacheDir: string; workDir: string } {
  const home = stateDir();
  return {
    cacheDir: path.join(home, 'cache', 'build'),
    debCacheDir: path.join(home, 'cache', 'debs'),
    workDir: path.join(home, 'work'),
  };
}
