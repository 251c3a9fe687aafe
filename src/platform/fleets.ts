/** Which of a spec's fleets a command acts on. */
import { ConfigError } from '../errors';
import type { Spec } from './types';

/** Fleets of the spec to act on: the named ones (checked), else all. */
export function selectFleets(spec: Spec, names?: string[]): string[] {
  const all = Object.keys(spec.fleets);
  if (!names?.length) {
    if (!all.length) throw new ConfigError('the spec defines no fleets', 'add a fleets: section naming an image, a target and replicas');
    return all;
  }
  const unknown = names.filter((n) => !spec.fleets[n]);
  if (unknown.length) throw new ConfigError(`--fleet: no fleet named ${unknown.map((u) => `"${u}"`).join(', ')}`, `the spec defines ${all.join(', ')}`);
  return names;
}
