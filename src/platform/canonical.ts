/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, `undefined` members dropped, so
 * equal values always serialise to equal bytes whatever order their keys were written in. This is
 * what cache keys and digests are computed over.
 */
import { createHash } from 'node:crypto';

function canonical(value: unknown, path: string): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonical JSON: non-finite number at ${path || '(root)'}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item, i) => (item === undefined ? 'null' : canonical(item, `${path}[${i}]`))).join(',')}]`;
  if (typeof value === 'object') {
    const members = Object.keys(value)
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key], `${path}.${key}`)}`);
    return `{${members.join(',')}}`;
  }
  throw new TypeError(`canonical JSON: cannot encode a ${typeof value} at ${path || '(root)'}`);
}

/** Serialise plain data (objects, arrays, strings, finite numbers, booleans, null) canonically. */
export function canonicalJson(value: unknown): string {
  return canonical(value, '');
}

/** Hex sha256 of the canonical JSON of `value`. */
export function canonicalSha256(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}
