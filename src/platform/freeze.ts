/** Deep freezing, so the one parsed spec can be shared by every consumer without defensive copies. */
import type { DeepReadonly } from './types';

/** Freeze `value` and everything reachable from it; returns it typed as deeply readonly. */
export function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value as DeepReadonly<T>;
}
