/**
 * Pins: refs under `pins/` that gc treats as roots it never removes. A pin names why it exists —
 * `pins/<reason>/<digest>`, e.g. `pins/fleet/web/<manifest digest>` — so one fleet can hold several
 * manifests (during a rollout) and several fleets can pin the same one.
 */
import { ConfigError, StoreObjectNotFoundError } from '../errors';
import { PIN_PREFIX, REF_RE, SHA256_RE, type ArtifactStore } from './store';

export interface Pin {
  /** The pinned digest (usually a publication manifest). */
  sha256: string;
  /** Why: `fleet/web`, `golden`, … */
  reason: string;
  ref: string;
}

/** A digest as given on a command line (`sha256:…` or bare hex), normalised; ConfigError naming `what` if malformed. */
export function parseDigest(text: string, what = 'digest'): string {
  const hex = text.trim().replace(/^sha256:/, '').toLowerCase();
  if (!SHA256_RE.test(hex)) throw new ConfigError(`${what} "${text}" is not a sha256 digest`, 'give 64 hex characters, optionally prefixed with sha256:');
  return hex;
}

function checkReason(reason: string): string {
  const r = reason.trim().replace(/^\/+|\/+$/g, '');
  if (!r || !REF_RE.test(r)) {
    throw new ConfigError(`--reason "${reason}" is not usable in a pin name`, 'use lowercase words separated by /, e.g. fleet/web');
  }
  return r;
}

/** The ref of a pin. */
export function pinRef(sha256: string, reason: string): string {
  return `${PIN_PREFIX}${checkReason(reason)}/${parseDigest(sha256)}`;
}

/** Pin a stored digest; pinning twice is harmless. */
export async function pin(store: ArtifactStore, sha256: string, reason: string): Promise<Pin> {
  const digest = parseDigest(sha256);
  const ref = pinRef(digest, reason);
  if (!(await store.has(digest))) {
    throw new StoreObjectNotFoundError(`sha256:${digest} is not in ${store.location}`, 'pin a published manifest: `kubedos store ls` lists them');
  }
  await store.setRef(ref, digest);
  return { sha256: digest, reason: checkReason(reason), ref };
}

/** Every pin, sorted by ref. Refs under pins/ that do not end in a digest are listed with their target. */
export async function listPins(store: ArtifactStore): Promise<Pin[]> {
  const out: Pin[] = [];
  for (const ref of await store.listRefs(PIN_PREFIX)) {
    const target = await store.getRef(ref);
    if (!target) continue;
    const rest = ref.slice(PIN_PREFIX.length);
    const last = rest.lastIndexOf('/');
    const named = last > 0 && rest.slice(last + 1) === target;
    out.push({ sha256: target, reason: named ? rest.slice(0, last) : rest, ref });
  }
  return out;
}

/** Remove the pins of a digest (only the one with `reason` when given); returns what was removed. */
export async function unpin(store: ArtifactStore, sha256: string, reason?: string): Promise<Pin[]> {
  const digest = parseDigest(sha256);
  const wanted = reason === undefined ? undefined : checkReason(reason);
  const gone = (await listPins(store)).filter((p) => p.sha256 === digest && (wanted === undefined || p.reason === wanted));
  for (const p of gone) await store.deleteRef(p.ref);
  return gone;
}
