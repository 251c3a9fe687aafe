/** What a store holds, by ref: publications, build records, pins (for `kubedos store ls`). */
import { parsePublication } from './publish';
import { PIN_PREFIX, SIGNATURE_PREFIX, signatureRefOf, type ArtifactStore } from './store';

/** Targets larger than this are never read to classify them (they are artifacts, not documents). */
const MAX_DOCUMENT = 1024 * 1024;

export type RefKind = 'publication' | 'build-record' | 'signature' | 'blob' | 'missing';

export interface RefEntry {
  ref: string;
  /** The digest the ref names. */
  sha256: string;
  kind: RefKind;
  /** Size of the target blob (absent when the blob is missing). */
  size?: number;
  /** Whether the ref is a pin (a gc root that is never removed). */
  pinned: boolean;
  /** Publications and build records: the image. */
  image?: string;
  /** Publications and build records: format and digest of each artifact. */
  artifacts?: { format: string; sha256: string; size: number }[];
  /** Publications: a signature is stored for the manifest (not checked here: `kubedos verify`). */
  signed?: boolean;
}

export interface ListRefsOptions {
  /** Only refs starting with this. */
  prefix?: string;
  /** Include `signatures/…` refs. @default false */
  signatures?: boolean;
}

/** Every ref with what it names, sorted by ref. */
export async function describeRefs(store: ArtifactStore, options: ListRefsOptions = {}): Promise<RefEntry[]> {
  const refs = (await store.listRefs(options.prefix)).filter((r) => options.signatures || !r.startsWith(SIGNATURE_PREFIX));
  const sizes = new Map((await store.listBlobs()).map((b) => [b.sha256, b.size]));
  const signatureRefs = new Set(await store.listRefs(SIGNATURE_PREFIX));
  const out: RefEntry[] = [];
  for (const ref of refs) {
    const sha256 = await store.getRef(ref);
    if (!sha256) continue;
    const size = sizes.get(sha256);
    const entry: RefEntry = { ref, sha256, kind: size === undefined ? 'missing' : 'blob', size, pinned: ref.startsWith(PIN_PREFIX) };
    if (ref.startsWith(SIGNATURE_PREFIX)) entry.kind = 'signature';
    else if (size !== undefined && size <= MAX_DOCUMENT) {
      const bytes = await store.getBytes(sha256).catch(() => undefined);
      const publication = bytes && parsePublication(bytes);
      if (publication) {
        entry.kind = 'publication';
        entry.image = publication.image.name;
        entry.artifacts = publication.artifacts.map(({ format, sha256: d, size: s }) => ({ format, sha256: d, size: s }));
        entry.signed = signatureRefs.has(signatureRefOf(sha256));
      } else if (bytes && bytes[0] === 0x7b) {
        const record = safeJson(bytes) as { image?: unknown; artifacts?: { format: string; sha256: string; size: number }[] } | undefined;
        if (record && typeof record.image === 'string' && Array.isArray(record.artifacts)) {
          entry.kind = 'build-record';
          entry.image = record.image;
          entry.artifacts = record.artifacts.map(({ format, sha256: d, size: s }) => ({ format, sha256: d, size: s }));
        }
      }
    }
    out.push(entry);
  }
  return out;
}

function safeJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}
