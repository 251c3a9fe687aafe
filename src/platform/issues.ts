/**
 * Turning zod issues into findings a person can act on: generic messages rewritten in terms of
 * YAML ("expected an integer, got "two""), unknown keys reported one by one with a "did you mean",
 * and union failures narrowed to the branch the user evidently meant.
 */
import type { z } from 'zod';
import type { PathSegment } from './locate';
import { isRecord, show } from './show';
import { closest } from './suggest';

/** A problem before it is located in the file: the path it concerns, and optionally a key under it. */
export interface Finding {
  readonly path: readonly PathSegment[];
  readonly message: string;
  /** Locate the issue at this key of the mapping at `path` rather than at the mapping itself. */
  readonly key?: string;
}

type RawIssue = z.core.$ZodRawIssue;

function expectedNoun(iss: RawIssue & { code: 'invalid_type' }): string {
  const format = (iss.inst as { _zod?: { def?: { format?: string } } } | undefined)?._zod?.def?.format;
  if (iss.expected === 'int' || format?.includes('int')) return 'an integer';
  const nouns: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    boolean: 'true or false',
    object: 'a mapping',
    record: 'a mapping',
    array: 'a list',
    tuple: 'a list',
  };
  return nouns[iss.expected] ?? iss.expected;
}

function sizeBound(iss: { origin: string; inclusive?: boolean }, bound: number | bigint, atLeast: boolean): string {
  const word = atLeast ? 'least' : 'most';
  if (iss.origin === 'array') return `must list at ${word} ${bound} item${bound === 1 ? '' : 's'}`;
  if (iss.origin === 'string') return atLeast && bound === 1 ? 'must not be empty' : `must be at ${word} ${bound} characters long`;
  if (iss.inclusive === false) return `must be ${atLeast ? 'greater' : 'less'} than ${bound}`;
  return `must be at ${word} ${bound}`;
}

/**
 * Per-parse error map: messages for issues whose schema did not supply its own. Schema-level
 * messages take precedence (zod consults them first), so this only words the generic cases.
 */
export function describeIssue(iss: RawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type': {
      const expected = expectedNoun(iss);
      return iss.input === undefined ? `required but missing; expected ${expected}` : `expected ${expected}, got ${show(iss.input)}`;
    }
    case 'invalid_value': {
      const values = iss.values.map((v) => show(v));
      return values.length === 1 ? `expected ${values[0]}, got ${show(iss.input)}` : `expected one of ${values.join(', ')}, got ${show(iss.input)}`;
    }
    case 'too_small':
      return `${sizeBound(iss, iss.minimum, true)}${iss.origin === 'number' ? `, got ${show(iss.input)}` : ''}`;
    case 'too_big':
      return `${sizeBound(iss, iss.maximum, false)}${iss.origin === 'number' ? `, got ${show(iss.input)}` : ''}`;
    case 'invalid_format':
      return `${show(iss.input)} is not valid${iss.pattern ? `: it must match ${iss.pattern}` : ''}`;
    case 'not_multiple_of':
      return `must be a multiple of ${iss.divisor}, got ${show(iss.input)}`;
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Which keys are allowed at a path: read from the schema itself, so suggestions never drift.

/** The parts of zod 4's public `def` introspection this module reads. */
interface Introspected {
  readonly def: {
    readonly type: string;
    readonly shape?: Readonly<Record<string, Introspected>>;
    readonly valueType?: Introspected;
    readonly element?: Introspected;
    readonly innerType?: Introspected;
    readonly in?: Introspected;
    readonly options?: readonly Introspected[];
    readonly items?: readonly Introspected[];
    readonly values?: readonly unknown[];
  };
}

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch', 'nonoptional']);

/** Whether an object variant's `type` literal admits the value's `type` (for discriminated unions). */
function admits(variant: Introspected, value: unknown): boolean {
  const literal = variant.def.shape?.type;
  if (!literal || literal.def.type !== 'literal' || !isRecord(value) || value.type === undefined) return true;
  return literal.def.values?.includes(value.type) ?? true;
}

/** The concrete schemas a value may be checked against: wrappers removed, unions expanded. */
function variants(schema: Introspected, value: unknown): Introspected[] {
  const { def } = schema;
  if (WRAPPERS.has(def.type) && def.innerType) return variants(def.innerType, value);
  if (def.type === 'pipe' && def.in) return variants(def.in, value);
  if (def.type === 'union' && def.options) {
    const all = def.options.flatMap((option) => variants(option, value));
    const matching = all.filter((v) => admits(v, value));
    return matching.length > 0 ? matching : all;
  }
  return [schema];
}

function descend(schema: Introspected, segment: PathSegment, value: unknown): Introspected[] {
  return variants(schema, value).flatMap((v): Introspected[] => {
    const { def } = v;
    if (def.type === 'object') return def.shape?.[String(segment)] ? [def.shape[String(segment)] as Introspected] : [];
    if (def.type === 'record' && def.valueType) return [def.valueType];
    if (def.type === 'array' && def.element) return [def.element];
    if (def.type === 'tuple' && typeof segment === 'number' && def.items?.[segment]) return [def.items[segment] as Introspected];
    return [];
  });
}

function valueAt(value: unknown, segment: PathSegment): unknown {
  if (Array.isArray(value) && typeof segment === 'number') return value[segment];
  return isRecord(value) ? value[String(segment)] : undefined;
}

/** Keys the schema allows for the mapping at `path` of `input`. */
export function allowedKeys(root: z.ZodType, path: readonly PathSegment[], input: unknown): string[] {
  let current: Introspected[] = [root as unknown as Introspected];
  let value = input;
  for (const segment of path) {
    current = current.flatMap((schema) => descend(schema, segment, value));
    value = valueAt(value, segment);
  }
  const keys = current
    .flatMap((schema) => variants(schema, value))
    .flatMap((v) => (v.def.type === 'object' && v.def.shape ? Object.keys(v.def.shape) : []));
  return [...new Set(keys)];
}

const SECRET_KEY = /passw|secret|token|api.?key|credential(?!sEnv)/i;

/** Message for one unknown key, with a suggestion when one is close. */
export function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  if (SECRET_KEY.test(key) && !allowed.includes(key)) {
    return (
      `unknown key "${key}": secrets are never written in the spec; ` +
      'API credentials are named by environment variable (credentialsEnv), SSH uses identityFile or the agent'
    );
  }
  const guess = closest(key, allowed);
  if (guess) return `unknown key "${key}"; did you mean "${guess}"?`;
  return allowed.length > 0 ? `unknown key "${key}"; allowed keys: ${allowed.join(', ')}` : `unknown key "${key}"`;
}

// ---------------------------------------------------------------------------------------------

/** An issue that only says "this branch is the wrong kind of thing", not what is wrong inside it. */
function isMismatch(issue: z.core.$ZodIssue): boolean {
  return issue.path.length === 0 && (issue.code === 'invalid_type' || issue.code === 'invalid_value');
}

/**
 * When every branch of a union failed, the branch whose failures go beyond "wrong kind" is the one
 * the user meant (e.g. an SSH mapping missing its host key, not the literal "local"); its issues
 * are reported. With no single such branch, the union's own message stands.
 */
function decisiveBranch(issue: z.core.$ZodIssue & { code: 'invalid_union' }): readonly z.core.$ZodIssue[] | undefined {
  const meant = issue.errors.filter((branch) => !branch.every(isMismatch));
  return meant.length === 1 ? meant[0] : undefined;
}

function findingsOf(issue: z.core.$ZodIssue, root: z.ZodType, input: unknown, prefix: readonly PathSegment[]): Finding[] {
  const path = [...prefix, ...issue.path.map((s) => (typeof s === 'number' ? s : String(s)))];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeys(root, path, input);
      return issue.keys.map((key) => ({ path, key, message: unknownKeyMessage(key, allowed) }));
    }
    case 'invalid_key':
      return [{ path: path.slice(0, -1), key: String(path[path.length - 1]), message: issue.issues[0]?.message ?? issue.message }];
    case 'invalid_union': {
      const branch = decisiveBranch(issue);
      return branch ? branch.flatMap((inner) => findingsOf(inner, root, input, path)) : [{ path, message: issue.message }];
    }
    default:
      return [{ path, message: issue.message }];
  }
}

/** Findings for every issue of a failed parse of `input` against `root`. */
export function findingsFromZod(issues: readonly z.core.$ZodIssue[], root: z.ZodType, input: unknown): Finding[] {
  return issues.flatMap((issue) => findingsOf(issue, root, input, []));
}
