/**
 * Request bodies checked against a published API description, the way the cloud stand-ins need
 * it: every member must be one the API defines for that object (unknown ones are refused, as Azure
 * Resource Manager's "Could not find member" and Google's "Invalid JSON payload received. Unknown
 * name" are), of the type it defines, and the required ones present. A shape is a small tree
 * written from the API reference (the stand-ins say which version).
 */
export type Shape =
  | 'string'
  | 'boolean'
  | 'integer'
  /** An int64 in Google's JSON mapping: a decimal string (a JSON number is accepted too, as Google does). */
  | 'int64'
  | { enum: readonly string[] }
  | { map: Shape }
  | { array: Shape }
  | { object: Record<string, Shape>; required?: readonly string[] }
  /** Anything: members the stand-in does not model but the API allows. */
  | 'any';

export interface ShapeProblem {
  /** e.g. `properties.osProfile.customData` */
  path: string;
  kind: 'unknown' | 'type' | 'required' | 'enum';
  message: string;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/** The first problem of `value` against `shape`, or undefined. */
export function checkShape(value: unknown, shape: Shape, path = ''): ShapeProblem | undefined {
  const at = (p: string) => (path ? `${path}.${p}` : p);
  if (shape === 'any') return undefined;
  if (shape === 'string') return typeof value === 'string' ? undefined : { path, kind: 'type', message: `${path} must be a string, not ${typeName(value)}` };
  if (shape === 'boolean') return typeof value === 'boolean' ? undefined : { path, kind: 'type', message: `${path} must be a boolean, not ${typeName(value)}` };
  if (shape === 'integer') return Number.isInteger(value) ? undefined : { path, kind: 'type', message: `${path} must be an integer, not ${typeName(value)}` };
  if (shape === 'int64') {
    return (typeof value === 'string' && /^-?\d+$/.test(value)) || Number.isInteger(value) ? undefined : { path, kind: 'type', message: `${path} must be an int64 (a decimal string), not ${JSON.stringify(value)}` };
  }
  if ('enum' in shape) {
    return typeof value === 'string' && shape.enum.includes(value) ? undefined : { path, kind: 'enum', message: `${path} must be one of ${shape.enum.join(', ')}, not ${JSON.stringify(value)}` };
  }
  if ('map' in shape) {
    if (typeName(value) !== 'object') return { path, kind: 'type', message: `${path} must be an object, not ${typeName(value)}` };
    for (const [k, v] of Object.entries(value as object)) {
      const p = checkShape(v, shape.map, at(k));
      if (p) return p;
    }
    return undefined;
  }
  if ('array' in shape) {
    if (!Array.isArray(value)) return { path, kind: 'type', message: `${path} must be an array, not ${typeName(value)}` };
    for (const [i, v] of value.entries()) {
      const p = checkShape(v, shape.array, `${path}[${i}]`);
      if (p) return p;
    }
    return undefined;
  }
  if (typeName(value) !== 'object') return { path, kind: 'type', message: `${path || 'the body'} must be an object, not ${typeName(value)}` };
  const obj = value as Record<string, unknown>;
  for (const [k, v] of Object.entries(obj)) {
    const member = shape.object[k];
    if (!member) return { path: at(k), kind: 'unknown', message: `'${k}' is not a member of ${path || 'the body'}` };
    if (v === null || v === undefined) continue;
    const p = checkShape(v, member, at(k));
    if (p) return p;
  }
  for (const k of shape.required ?? []) {
    if (obj[k] === undefined || obj[k] === null) return { path: at(k), kind: 'required', message: `${at(k)} is required` };
  }
  return undefined;
}

/** The value at a dotted path of a JSON body. */
export function at(value: unknown, path: string): unknown {
  let v = value;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}
