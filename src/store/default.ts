/** The store and build directories of this state directory (the embedded default). */
import path from 'node:path';
import { stateDir } from '../config/paths';
import { LocalStore } from './local';
import { S3Store, s3ConfigFromEnv } from './s3';
import type { ArtifactStore } from './store';

export function defaultStore(): LocalStore {
  return new LocalStore(path.join(stateDir(), 'store'));
}

/** The S3 store when KUBEDOS_S3_BUCKET is set (see s3ConfigFromEnv), else the local default. */
export function configuredStore(): ArtifactStore {
  const s3 = s3ConfigFromEnv();
  return s3 ? new S3Store(s3) : defaultStore();
}

export function defaultBuildDirs(): { cacheDir: string; debCacheDir: string; workDir: string } {
  const home = stateDir();
  return {
    cacheDir: path.join(home, 'cache', 'build'),
    debCacheDir: path.join(home, 'cache', 'debs'),
    workDir: path.join(home, 'work'),
  };
}
