/**
 * Verifying an artifact before it is deployed: its bytes hash to its digest, a publication
 * manifest references that digest, and the manifest carries a valid Foundry signature.
 */
import { ArtifactNotPublishedError, DigestMismatchError, SignatureInvalidError, StoreError } from '../errors';
import { sha256OfFile } from './transfer';
import { parsePublication, publicationDigests, type PublicationManifest } from './publish';
import { verifySignature } from './signing';
import { SHA256_RE, SIGNATURE_PREFIX, signatureRefOf, type ArtifactStore } from './store';

export interface VerifyArtifactOptions {
  /** Path of the OpenSSH allowed_signers file that lists trusted Foundry keys. */
  allowedSigners: string;
  /** Check this local copy (e.g. what a deploy downloaded) instead of reading the stored blob. */
  file?: string;
  /** Only consider this manifest digest … */
  manifest?: string;
  /** … or the manifest this ref points at. Default: every published manifest in the store. */
  ref?: string;
  signal?: AbortSignal;
}

export interface VerifiedArtifact {
  sha256: string;
  size: number;
  /** The signed publication manifest that references the artifact. */
  manifest: string;
  /** Refs that point at that manifest (`images/web/latest`, `pins/…`), sorted. */
  refs: string[];
  /** The artifact's entry in the manifest (undefined when the digest is a supporting document). */
  artifact?: PublicationManifest['artifacts'][number];
  publication: PublicationManifest;
}

/** Every non-signature ref with its target. */
async function refTargets(store: ArtifactStore): Promise<Map<string, string>> {
  const refs = (await store.listRefs()).filter((r) => !r.startsWith(SIGNATURE_PREFIX));
  const targets = await Promise.all(refs.map((r) => store.getRef(r)));
  const out = new Map<string, string>();
  refs.forEach((r, i) => targets[i] !== undefined && out.set(r, targets[i]!));
  return out;
}

/**
 * Throws DigestMismatchError (bytes altered), ArtifactNotPublishedError (no manifest references
 * the digest) or SignatureInvalidError (no manifest referencing it has a valid signature).
 */
export async function verifyArtifact(store: ArtifactStore, sha256: string, options: VerifyArtifactOptions): Promise<VerifiedArtifact> {
  if (!SHA256_RE.test(sha256)) throw new StoreError(`"${sha256}" is not a sha256 digest`);
  // 1. The bytes.
  let size: number;
  if (options.file) {
    const ref = await sha256OfFile(options.file, { signal: options.signal });
    if (ref.sha256 !== sha256) throw new DigestMismatchError(sha256, ref.sha256, options.file);
    size = ref.size;
  } else {
    size = (await store.verifyBlob(sha256, { signal: options.signal })).size;
  }

  // 2. The manifests that reference it.
  let candidates: string[];
  let targets: Map<string, string> | undefined;
  if (options.manifest) {
    if (!SHA256_RE.test(options.manifest)) throw new StoreError(`manifest "${options.manifest}" is not a sha256 digest`, 'give the 64-hex digest of a publication manifest');
    candidates = [options.manifest];
  } else if (options.ref) {
    const target = await store.getRef(options.ref);
    if (!target) throw new StoreError(`ref ${options.ref} does not exist in ${store.location}`, 'publish the build first, or list refs with `kubedos store ls`');
    candidates = [target];
    targets = new Map([[options.ref, target]]);
  } else {
    targets = await refTargets(store);
    candidates = [...new Set(targets.values())].sort();
  }
  const referencing: { digest: string; bytes: Buffer; publication: PublicationManifest }[] = [];
  for (const digest of candidates) {
    if (!(await store.has(digest))) continue;
    const info = await store.getBytes(digest);
    const publication = parsePublication(info);
    if (publication && (digest === sha256 || publicationDigests(publication).includes(sha256))) referencing.push({ digest, bytes: info, publication });
  }
  if (referencing.length === 0) throw new ArtifactNotPublishedError(sha256, store.location);

  // 3. A valid signature on one of them.
  let firstFailure: SignatureInvalidError | undefined;
  for (const m of referencing) {
    const subject = `manifest sha256:${m.digest}`;
    try {
      const sigDigest = await store.getRef(signatureRefOf(m.digest));
      if (!sigDigest) throw new SignatureInvalidError(subject, `it is unsigned: ${store.location} holds no signature for it (ref ${signatureRefOf(m.digest)})`);
      const signature = (await store.getBytes(sigDigest)).toString('utf8');
      await verifySignature(m.bytes, signature, { allowedSigners: options.allowedSigners, subject, signal: options.signal });
      targets ??= await refTargets(store);
      const refs = [...targets].filter(([, t]) => t === m.digest).map(([r]) => r).sort();
      const artifact = m.publication.artifacts.find((a) => a.sha256 === sha256);
      return { sha256, size, manifest: m.digest, refs, artifact, publication: m.publication };
    } catch (err) {
      if (!(err instanceof SignatureInvalidError)) throw err;
      firstFailure ??= err;
    }
  }
  throw firstFailure!;
}
