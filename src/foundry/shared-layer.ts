/**
 * The shared layer of a platform: the packages every image of it has, installed once and reused
 * by each image that adds packages of its own (a role: containerd on workers, etcd on etcd
 * nodes). Seven roles then cost one base install plus seven small ones instead of seven full
 * installs.
 *
 * What is shared is derived from each image's own lock, never resolved apart from it: the shared
 * set is the dependency closure, inside that lock, of what mmdebstrap's minbase selects (the
 * Essential:yes and Priority:required packages, apt) plus the platform's packages. So a rebuild
 * from the lock alone — the mirror having moved on — finds the same shared set, the same shared
 * layer and the same tree; the lock, the SBOM and the installed set stay exactly the image's own.
 * Images whose locks agree on that closure (locked together from one mirror state) share one
 * layer; an image whose lock cannot be split so is installed in one pass, as before.
 */
import type { Paragraph } from './deb822';
import type { LockedPackage } from './lock';
import { canonicalJson, sha256Hex } from './plan';

/** Kind tag of shared-layer digests (bumped whenever the same set would install a different tree). */
export const SHARED_LAYER_KIND = 'kubedos.shared-layer/v1';

/** One alternative of a dependency clause: `name[:arch] [(op version)]`, reduced to the name. */
function alternativeName(text: string): string {
  return text.trim().replace(/\s*\(.*\)\s*$/, '').replace(/:[a-z0-9-]+$/, '').trim();
}

/** The clauses of a Depends/Pre-Depends field: each a list of alternative package names. */
export function dependencyClauses(field: string | undefined): string[][] {
  if (!field) return [];
  return field
    .split(',')
    .map((clause) => clause.split('|').map(alternativeName).filter(Boolean))
    .filter((alts) => alts.length > 0);
}

/** A name as apt takes it on the command line: the package, without a `=version` pin. */
const packageOf = (requested: string) => requested.split('=')[0]!;

/**
 * The shared part of a lock: the closure of the minbase selection and `sharedPackages` over
 * Depends and Pre-Depends, among the lock's own packages (`index` is its local repository's
 * Packages). A clause already met by a chosen package (by name or Provides) adds nothing;
 * otherwise its first alternative the lock holds is chosen, a real package before a provider, as
 * apt does. Returns undefined when the lock holds no way to meet a clause (the image is then
 * installed in one pass) and the full set when nothing is left to add on top.
 */
export function sharedSubset(lock: readonly LockedPackage[], index: readonly Paragraph[], sharedPackages: readonly string[]): LockedPackage[] | undefined {
  const byName = new Map(index.filter((p) => p.Package).map((p) => [p.Package!, p]));
  const providers = new Map<string, string[]>();
  for (const p of byName.values()) {
    for (const virtual of dependencyClauses(p.Provides).flat()) providers.set(virtual, [...(providers.get(virtual) ?? []), p.Package!].sort());
  }
  const chosen = new Set<string>();
  const provided = new Set<string>();
  const queue: string[] = [];
  const choose = (name: string) => {
    if (chosen.has(name)) return;
    chosen.add(name);
    for (const virtual of dependencyClauses(byName.get(name)!.Provides).flat()) provided.add(virtual);
    queue.push(name);
  };
  const roots = [
    ...[...byName.values()].filter((p) => p.Essential === 'yes' || p.Priority === 'required').map((p) => p.Package!),
    'apt',
    ...sharedPackages.map(packageOf),
  ];
  for (const name of [...new Set(roots)].sort()) {
    if (!byName.has(name)) return undefined;
    choose(name);
  }
  while (queue.length > 0) {
    const pkg = byName.get(queue.shift()!)!;
    for (const alts of [...dependencyClauses(pkg['Pre-Depends']), ...dependencyClauses(pkg.Depends)]) {
      if (alts.some((a) => chosen.has(a) || provided.has(a))) continue;
      const pick = alts.find((a) => byName.has(a)) ?? alts.map((a) => providers.get(a)?.[0]).find(Boolean);
      if (!pick) return undefined;
      choose(pick);
    }
  }
  return lock.filter((p) => chosen.has(p.name));
}

/** The shared layer's cache key: its packages (exactly, by sha256) and the epoch they are installed at. */
export function sharedLayerDigest(subset: readonly LockedPackage[], sourceDateEpoch: number, suite: string): string {
  const packages = subset.map((p) => `${p.name} ${p.version} ${p.architecture} ${p.sha256}`).sort();
  return sha256Hex(canonicalJson({ kind: SHARED_LAYER_KIND, suite, sourceDateEpoch, packages }));
}
