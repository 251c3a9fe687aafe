/**
 * Mapping spec paths to places in the YAML text, so every issue can say `file:line:col`.
 */
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node, type ParsedNode } from 'yaml';

/** One step of a path: a mapping key or a list index. */
export type PathSegment = string | number;

/** `images.worker.outputs[2]`; keys that are not plain words are quoted: `files["a.b"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(String(segment))) out += out ? `.${String(segment)}` : String(segment);
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** 1-based line and column. */
export interface Position {
  readonly line: number;
  readonly col: number;
}

function keyText(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}

function start(node: unknown): number | undefined {
  const range = (node as Partial<Node> | null)?.range;
  return range ? range[0] : undefined;
}

/** Walk down one segment: the child node and the key node that names it (for mappings). */
function child(node: unknown, segment: PathSegment): { node: unknown; key: unknown } | undefined {
  if (isMap(node)) {
    const pair = node.items.find((p) => isPair(p) && keyText(p.key) === String(segment));
    return pair ? { node: pair.value, key: pair.key } : undefined;
  }
  if (isSeq(node) && typeof segment === 'number') {
    const item = node.items[segment];
    return item === undefined ? undefined : { node: item, key: item };
  }
  return undefined;
}

/**
 * Offset in the source where `path` starts. With `key`, where that key of the mapping at `path`
 * is written (for unknown keys). A path that does not exist in the document (a missing required
 * field) resolves to the key of its deepest existing ancestor, which is where the user must add it.
 */
export function offsetOf(doc: Document.Parsed<ParsedNode>, path: readonly PathSegment[], key?: string): number | undefined {
  let node: unknown = doc.contents;
  let owner: unknown;
  for (const segment of path) {
    const next = child(node, segment);
    if (!next) return start(owner) ?? start(node);
    owner = next.key;
    node = next.node;
  }
  if (key !== undefined) {
    const named = child(node, key);
    if (named) return start(named.key);
  }
  // `image:` with nothing after it has no value node; point at its key instead.
  return start(node) ?? start(owner);
}

/** `file:line:col` for an offset, or the bare file when the offset is unknown. */
export function locationOf(file: string, lineCounter: LineCounter, offset: number | undefined): string {
  if (offset === undefined) return file;
  const { line, col } = lineCounter.linePos(offset);
  return `${file}:${line}:${col}`;
}

/** A mapping key found in the document: its text and the path of its value. */
export interface KeyAt {
  readonly key: string;
  readonly path: readonly PathSegment[];
}

/** Every mapping key by source offset; used to name the key a YAML error (e.g. a duplicate) points at. */
export function keysByOffset(doc: Document.Parsed<ParsedNode>): ReadonlyMap<number, KeyAt> {
  const found = new Map<number, KeyAt>();
  const walk = (node: unknown, path: readonly PathSegment[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = keyText(pair.key);
        const offset = start(pair.key);
        if (key === undefined) continue;
        if (offset !== undefined) found.set(offset, { key, path: [...path, key] });
        walk(pair.value, [...path, key]);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => walk(item, [...path, index]));
    }
  };
  walk(doc.contents, []);
  return found;
}
