/**
 * The import rules of ../shared/notes/architecture.md, enforced: workflows stay deterministic
 * (no Node built-ins or I/O libraries anywhere in what they import at run time), the domain core
 * knows nothing of Temporal, activities never import workflows.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

interface Import {
  spec: string;
  typeOnly: boolean;
}

function tsFiles(dir: string): string[] {
  const abs = path.join(ROOT, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs).flatMap((name) => {
    const full = path.join(abs, name);
    if (statSync(full).isDirectory()) return tsFiles(path.join(dir, name));
    return name.endsWith('.ts') ? [full] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const found: Import[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) found.push({ spec: m[3]!, typeOnly: Boolean(m[2]) });
  for (const m of text.matchAll(/require\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push({ spec: m[1]!, typeOnly: false });
  for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push({ spec: m[1]!, typeOnly: false });
  return found;
}

function resolveLocal(from: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(from), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) if (existsSync(candidate)) return candidate;
  return undefined;
}

const rel = (f: string) => path.relative(ROOT, f);
const FORBIDDEN_IN_WORKFLOWS = /^(node:|fs$|path$|os$|child_process$|crypto$|net$|http|@temporalio\/(worker|client|activity)|execa|ssh2|@aws-sdk|yaml$|commander)/;

/** Every module a workflow file pulls in at run time (type-only imports are erased). */
function runtimeClosure(entry: string, seen = new Map<string, string[]>()): Map<string, string[]> {
  if (seen.has(entry)) return seen;
  const externals: string[] = [];
  seen.set(entry, externals);
  for (const imp of importsOf(entry)) {
    if (imp.typeOnly) continue;
    if (imp.spec.startsWith('.')) {
      const target = resolveLocal(entry, imp.spec);
      if (target) runtimeClosure(target, seen);
    } else externals.push(imp.spec);
  }
  return seen;
}

test('workflows import nothing that does I/O or breaks determinism, even transitively', () => {
  const files = tsFiles('workflows');
  expect(files.length).toBeGreaterThan(0);
  const violations: string[] = [];
  for (const file of files) {
    for (const [module, externals] of runtimeClosure(file)) {
      for (const ext of externals.filter((e) => FORBIDDEN_IN_WORKFLOWS.test(e))) {
        violations.push(`${rel(file)} → ${rel(module)} imports ${ext}`);
      }
      const r = rel(module);
      if (/^src\/(foundry|targets|ssh|store|exec|temporal|cli)\//.test(r) || r.startsWith('activities/')) {
        violations.push(`${rel(file)} → ${r} at run time (use import type)`);
      }
    }
  }
  expect(violations).toEqual([]);
});

test('the domain core (src/ outside temporal/ and cli/) does not import @temporalio', () => {
  const violations = tsFiles('src')
    .filter((f) => !/^src\/(temporal|cli)\//.test(rel(f)))
    .flatMap((f) => importsOf(f).filter((i) => i.spec.startsWith('@temporalio/')).map((i) => `${rel(f)} imports ${i.spec}`));
  expect(violations).toEqual([]);
});

test('activities never import workflows', () => {
  const violations = tsFiles('activities').flatMap((f) =>
    importsOf(f)
      .filter((i) => i.spec.startsWith('.') && rel(resolveLocal(f, i.spec) ?? '').startsWith('workflows/'))
      .map((i) => `${rel(f)} imports ${i.spec}`),
  );
  expect(violations).toEqual([]);
});

test('target drivers do not import one another', () => {
  // A driver is a folder src/targets/<type>/; what they share (identity, seeds, hosts) sits beside them.
  const folderOf = (file: string) => /^src\/targets\/([^/]+)\//.exec(rel(file))?.[1];
  const files = tsFiles('src/targets').filter((f) => folderOf(f));
  // Every registry line names a folder of its own.
  const registered = [...readFileSync(path.join(ROOT, 'src/targets/registry.ts'), 'utf8').matchAll(/from '\.\/([^']+)'/g)].map((m) => m[1]!);
  expect(registered.length).toBeGreaterThanOrEqual(3);
  for (const folder of registered) expect(files.map(folderOf)).toContain(folder);
  const violations = files.flatMap((f) =>
    importsOf(f)
      .map((i) => (i.spec.startsWith('.') ? resolveLocal(f, i.spec) : undefined))
      .filter((t): t is string => Boolean(t && folderOf(t) && folderOf(t) !== folderOf(f)))
      .map((t) => `${rel(f)} imports ${rel(t)}`),
  );
  expect(violations).toEqual([]);
});

test('the rule checker itself catches a violation', () => {
  // Guard against a checker that silently sees nothing: the doctor workflow must be found and
  // its type-only import of activities must not count, while a value import would.
  const doctor = path.join(ROOT, 'workflows', 'doctor.ts');
  const imports = importsOf(doctor);
  expect(imports.some((i) => i.spec === '../activities/probe' && i.typeOnly)).toBe(true);
  expect(imports.some((i) => i.spec === '@temporalio/workflow' && !i.typeOnly)).toBe(true);
  expect(FORBIDDEN_IN_WORKFLOWS.test('node:fs')).toBe(true);
});
