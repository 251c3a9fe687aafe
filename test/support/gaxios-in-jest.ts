/**
 * jest runs each test file in a vm context without dynamic import(), and gaxios 7 (the HTTP client
 * of Google's auth library and metadata client that @google-cloud/compute uses) loads node-fetch
 * with `import('node-fetch')` on its first request, which fails there
 * (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING_FLAG) — a plain `node` worker is not affected. In the
 * tests, those gaxios copies are handed Node's own fetch instead (gaxios supports any WHATWG fetch:
 * it uses window.fetch in browsers). Import this before any Google client is made.
 */
import path from 'node:path';

type GaxiosModule = { Gaxios: { prototype: { request: (opts?: Record<string, unknown>) => Promise<unknown> } } };

const from = [require.resolve('google-gax')];
for (const dep of ['google-auth-library', 'gcp-metadata']) {
  try {
    from.push(require.resolve(dep, { paths: [path.dirname(from[0]!)] }));
  } catch {
    // not nested there
  }
}
const patched = new Set<string>();
for (const base of from) {
  let file: string;
  try {
    file = require.resolve('gaxios', { paths: [path.dirname(base)] });
  } catch {
    continue;
  }
  if (patched.has(file)) continue;
  patched.add(file);
  const mod = require(file) as GaxiosModule;
  const original = mod.Gaxios.prototype.request;
  mod.Gaxios.prototype.request = function request(this: unknown, opts: Record<string, unknown> = {}) {
    return original.call(this, { fetchImplementation: fetch, ...opts });
  };
}
