/**
 * Reading a spec file: YAML → schema → cross-references → one frozen, fully defaulted `Spec`, or
 * one `SpecError` listing every problem with its path and `file:line:col`.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { LineCounter, parseDocument, type Document, type ParsedNode, type YAMLError } from 'yaml';
import { ConfigError, SpecError, type SpecIssue } from '../errors';
import { API_VERSION } from './catalog';
import { deepFreeze } from './freeze';
import { describeIssue, findingsFromZod, type Finding } from './issues';
import { formatPath, keysByOffset, locationOf, offsetOf, type KeyAt, type PathSegment } from './locate';
import { referenceFindings } from './references';
import { specSchema } from './schema';
import { resolveSources, sourceFindings } from './sources';
import type { Spec } from './types';

/** The file `loadSpec` reads when given a directory. */
export const SPEC_FILE_NAME = 'kubedos.yaml';

/** Options of {@link parseSpec}. */
export interface ParseSpecOptions {
  /**
   * Directory that payload `source` paths are relative to.
   * @default the directory of `file`
   */
  readonly baseDir?: string;
  /**
   * Check that every payload `source` exists, and record its sha256 (which the spec digest uses).
   * Turn off only where the payload is not present, e.g. to validate a spec shipped alone.
   * @default true
   */
  readonly checkSources?: boolean;
}

/** An issue before it is rendered: where it starts in the text, for sorting and `line:col`. */
interface Located {
  readonly path: string;
  readonly message: string;
  readonly offset: number | undefined;
}

// ---------------------------------------------------------------------------------------------
// YAML

/** Rename yaml's terse messages where a better one is cheap; the key of a duplicate is worth naming. */
function yamlMessage(error: YAMLError, keyAt: ReadonlyMap<number, KeyAt>): Located {
  const offset = error.pos[0];
  if (error.code === 'DUPLICATE_KEY') {
    const dup = keyAt.get(offset);
    return { path: dup ? formatPath(dup.path) : '', offset, message: `duplicate key${dup ? ` "${dup.key}"` : ''}: each key may appear only once in a mapping` };
  }
  if (error.code === 'MULTIPLE_DOCS') return { path: '', offset, message: 'a spec is a single YAML document; remove the second "---" and what follows or merge it' };
  return { path: '', offset, message: `YAML syntax error: ${error.message.split('\n')[0]}` };
}

interface Decoded {
  readonly doc: Document.Parsed<ParsedNode>;
  readonly lineCounter: LineCounter;
  readonly value: unknown;
  readonly problems: readonly Located[];
}

function decodeYaml(text: string): Decoded {
  const lineCounter = new LineCounter();
  // YAML 1.2 core schema: `yes`/`on` stay strings and `0644` is decimal, as documented per field.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true, version: '1.2' });
  const errors = [...doc.errors, ...doc.warnings];
  if (errors.length > 0) {
    const keyAt = keysByOffset(doc);
    return { doc, lineCounter, value: undefined, problems: errors.map((e) => yamlMessage(e, keyAt)) };
  }
  try {
    // The alias limit stops "billion laughs" documents from expanding without bound.
    return { doc, lineCounter, value: doc.toJS({ maxAliasCount: 100 }), problems: [] };
  } catch (error) {
    return { doc, lineCounter, value: undefined, problems: [{ path: '', offset: 0, message: `YAML error: ${(error as Error).message}` }] };
  }
}

// ---------------------------------------------------------------------------------------------
// checks

function isEmpty(value: unknown): boolean {
  return value === null || value === undefined;
}

/** Schema issues first: when a cross-reference repeats a path the schema already flagged, the schema's message wins. */
function withoutRepeats(findings: readonly Finding[]): Finding[] {
  const seen = new Set<string>();
  return findings.filter((f) => {
    const id = `${formatPath(f.path)}\u0000${f.key ?? ''}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

function check(value: unknown, baseDir: string, checkSources: boolean): { findings: Finding[]; parsed?: ReturnType<typeof specSchema.parse> } {
  const result = specSchema.safeParse(value, { error: describeIssue });
  const findings = withoutRepeats([
    ...(result.success ? [] : findingsFromZod(result.error.issues, specSchema, value)),
    ...referenceFindings(value),
    ...(checkSources ? sourceFindings(value, baseDir) : []),
  ]);
  return result.success ? { findings, parsed: result.data } : { findings };
}

function locate(decoded: Decoded, finding: Finding): Located {
  return { path: formatPath(finding.path), message: finding.message, offset: offsetOf(decoded.doc, finding.path as PathSegment[], finding.key) };
}

function specError(file: string, lineCounter: LineCounter, problems: readonly Located[]): SpecError {
  const ordered = [...problems].sort((a, b) => (a.offset ?? Infinity) - (b.offset ?? Infinity));
  const issues = ordered.map((p): SpecIssue => ({ path: p.path, message: p.message, location: locationOf(file, lineCounter, p.offset) }));
  return new SpecError(file, issues);
}

// ---------------------------------------------------------------------------------------------

/**
 * Parse and validate spec text. Synchronous (it may stat and hash payload `source` files).
 *
 * @param text the YAML (or JSON) text
 * @param file the name used in messages and, by default, to resolve `source` paths
 * @returns the fully defaulted, deep-frozen spec
 * @throws SpecError listing every problem found, sorted by position in the file
 */
export function parseSpec(text: string, file: string, opts: ParseSpecOptions = {}): Spec {
  const baseDir = opts.baseDir ?? dirname(resolve(file));
  const checkSources = opts.checkSources ?? true;
  const decoded = decodeYaml(text);
  if (decoded.problems.length > 0) throw specError(file, decoded.lineCounter, decoded.problems);
  if (isEmpty(decoded.value)) {
    throw specError(file, decoded.lineCounter, [{ path: '', offset: 0, message: `the spec is empty; it starts with "apiVersion: ${API_VERSION}"` }]);
  }
  const { findings, parsed } = check(decoded.value, baseDir, checkSources);
  if (findings.length > 0 || !parsed) throw specError(file, decoded.lineCounter, findings.map((f) => locate(decoded, f)));
  return deepFreeze(resolveSources(parsed, baseDir, checkSources));
}

/**
 * Read and validate a spec file. A directory means its `kubedos.yaml`.
 *
 * @throws ConfigError when the file cannot be read; SpecError when it is invalid
 */
export async function loadSpec(file: string, opts: ParseSpecOptions = {}): Promise<Spec> {
  const path = await stat(file).then(
    (s) => (s.isDirectory() ? join(file, SPEC_FILE_NAME) : file),
    () => file,
  );
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const hint = code === 'ENOENT' ? `create ${SPEC_FILE_NAME} (examples/quickstart has one to start from) or pass the path of your spec` : undefined;
    throw new ConfigError(`cannot read spec ${path}: ${code ?? (error as Error).message}`, hint, { cause: error });
  }
  return parseSpec(text, path, opts);
}
