/** The store and build directories of this state directory (the embedded default). */
import path from 'node:path';
import { stateDir } from '../config/paths';
import { LocalStore } from './local';

export function defaultStore(): LocalStore {
  return new LocalStore(path.join(stateDir(), 'store'));
}

export function defaultBuildDirs(): { cacheDir: string; debCacheDir: string; workDir: string } {
  const home = stateDir();
  return {
    cacheDir: path.join(home, 'cache', 'build'),
    debCacheDir: path.join(home, 'cache', 'debs'),
    workDir: path.join(home, 'work'),
  };
}
