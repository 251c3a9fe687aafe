/** Where KubeDos keeps its state and where the project's own installed tools live. */
import os from 'node:os';
import path from 'node:path';
import { env } from './env';

/** The state directory: KUBEDOS_HOME, else $XDG_STATE_HOME/kubedos, else ~/.local/state/kubedos. */
export function stateDir(): string {
  const explicit = env('KUBEDOS_HOME');
  if (explicit) return path.resolve(explicit);
  const xdg = process.env.XDG_STATE_HOME;
  return path.join(xdg ? path.resolve(xdg) : path.join(os.homedir(), '.local', 'state'), 'kubedos');
}

/** True when the user moved the state directory explicitly (then ports may float, see stack). */
export function stateDirIsExplicit(): boolean {
  return env('KUBEDOS_HOME') !== undefined;
}

/** The project checkout (or installed package) root: two levels above this file in src/ and dist/src/. */
export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (require('node:fs').existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find the KubeDos project root above ${__dirname}`);
}
