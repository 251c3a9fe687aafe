/**
 * The SBOM of an image: an SPDX 2.3 JSON document listing every installed Debian package.
 *
 * Input is the image's package set, from the lock (name, version, architecture, .deb sha256, pool
 * path) or from the rootfs's dpkg status file (optionally matched against the lock for checksums).
 * The document is deterministic: its namespace comes from the digest of the input and its creation
 * time from SOURCE_DATE_EPOCH, never from the clock or a random UUID, so one image has one SBOM.
 */
import { createHash } from 'node:crypto';
import type { Lock, LockedPackage } from '../foundry/lock';

/** Base of the URIs KubeDos mints (SPDX namespaces, SLSA build type and builder id). */
export const KUBEDOS_URI_BASE = 'https://kubedos.invalid';
export const SPDX_MEDIA_TYPE = 'application/spdx+json';

/** One installed package. */
export interface SbomPackage {
  name: string;
  version: string;
  architecture: string;
  /** sha256 of the .deb, when known (from the lock). */
  sha256?: string;
  /** Pool path of the .deb in its archive (`pool/main/b/bash/…deb`), when known. */
  filename?: string;
  /** Which archive `filename` is relative to. @default 'mirror' */
  origin?: 'mirror' | 'security';
}

export interface SbomInput {
  image: {
    name: string;
    /** e.g. the build's input digest. */
    version?: string;
    /** sha256 of the image artifact the SBOM describes, when there is a single one. */
    sha256?: string;
  };
  packages: readonly SbomPackage[];
  sourceDateEpoch: number;
  /** Archive URLs, to give each package its .deb download location; NOASSERTION without them. */
  mirror?: string;
  securityMirror?: string;
  /** @default `${KUBEDOS_URI_BASE}/spdx` */
  namespaceBase?: string;
  /** Creator tool string. @default 'kubedos' */
  tool?: string;
}

export interface SpdxChecksum {
  algorithm: 'SHA256';
  checksumValue: string;
}

export interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo?: string;
  supplier?: string;
  downloadLocation: string;
  filesAnalyzed: false;
  checksums?: SpdxChecksum[];
  licenseConcluded: 'NOASSERTION';
  licenseDeclared: 'NOASSERTION';
  copyrightText: 'NOASSERTION';
  primaryPackagePurpose?: string;
  externalRefs?: { referenceCategory: 'PACKAGE-MANAGER'; referenceType: 'purl'; referenceLocator: string }[];
}

export interface SpdxRelationship {
  spdxElementId: string;
  relationshipType: 'DESCRIBES' | 'CONTAINS';
  relatedSpdxElement: string;
}

export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  packages: SpdxPackage[];
  relationships: SpdxRelationship[];
}

/** Packages from a lock. */
export function packagesFromLock(lock: Lock): SbomPackage[] {
  return lock.packages.map((p: LockedPackage) => ({
    name: p.name,
    version: p.version,
    architecture: p.architecture,
    sha256: p.sha256,
    filename: p.filename,
    origin: p.origin,
  }));
}

/**
 * Installed packages from dpkg's status file (`/var/lib/dpkg/status`); with a lock, each package
 * the lock pins (same name, version, architecture) gets its .deb sha256 and pool path.
 */
export function packagesFromDpkgStatus(text: string, lock?: Lock): SbomPackage[] {
  const pinned = new Map((lock?.packages ?? []).map((p) => [`${p.name} ${p.version} ${p.architecture}`, p]));
  const out: SbomPackage[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const line of stanza.split('\n')) {
      if (/^\s/.test(line) && last) {
        fields.set(last, `${fields.get(last)}\n${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m) {
        last = m[1]!.toLowerCase();
        fields.set(last, m[2]!.trim());
      }
    }
    const name = fields.get('package');
    const version = fields.get('version');
    const architecture = fields.get('architecture');
    const status = fields.get('status') ?? '';
    if (!name || !version || !architecture || !/\binstalled$/.test(status) || /not-installed/.test(status)) continue;
    const lockEntry = pinned.get(`${name} ${version} ${architecture}`);
    out.push({
      name,
      version,
      architecture,
      ...(lockEntry ? { sha256: lockEntry.sha256, filename: lockEntry.filename, origin: lockEntry.origin } : {}),
    });
  }
  return out;
}

/** The purl of a Debian package: `pkg:deb/debian/<name>@<version>?arch=<arch>` (percent-encoded). */
export function debPurl(p: Pick<SbomPackage, 'name' | 'version' | 'architecture'>): string {
  return `pkg:deb/debian/${encodeURIComponent(p.name)}@${encodeURIComponent(p.version)}?arch=${encodeURIComponent(p.architecture)}`;
}

/** SPDX date-time: `YYYY-MM-DDThh:mm:ssZ`. */
export function spdxDate(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function idPart(text: string): string {
  return text.replace(/[^A-Za-z0-9.-]+/g, '-');
}

function sortKey(p: SbomPackage): string {
  return `${p.name}\u0000${p.architecture}\u0000${p.version}`;
}

/** Digest of everything the document is made from (its namespace is derived from it). */
export function sbomInputDigest(input: SbomInput): string {
  const packages = [...input.packages].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
  const canonical = JSON.stringify({
    image: { name: input.image.name, version: input.image.version ?? null, sha256: input.image.sha256 ?? null },
    packages: packages.map((p) => [p.name, p.version, p.architecture, p.sha256 ?? null, p.filename ?? null, p.origin ?? 'mirror']),
    sourceDateEpoch: input.sourceDateEpoch,
    mirror: input.mirror ?? null,
    securityMirror: input.securityMirror ?? null,
  });
  return createHash('sha256').update(canonical).digest('hex');
}

/** Build the SPDX 2.3 document. Same input, same bytes. */
export function buildSbom(input: SbomInput): SpdxDocument {
  const digest = sbomInputDigest(input);
  const imageId = `SPDXRef-Image-${idPart(input.image.name)}`;
  const used = new Set<string>([imageId]);
  const archiveOf = (p: SbomPackage): string | undefined =>
    (p.origin === 'security' ? input.securityMirror : input.mirror)?.replace(/\/+$/, '');

  const sorted = [...input.packages].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
  const debs: SpdxPackage[] = sorted.map((p) => {
    let id = `SPDXRef-Package-deb-${idPart(p.name)}-${idPart(p.architecture)}`;
    for (let n = 2; used.has(id); n++) id = `SPDXRef-Package-deb-${idPart(p.name)}-${idPart(p.architecture)}-${n}`;
    used.add(id);
    const archive = archiveOf(p);
    return {
      SPDXID: id,
      name: p.name,
      versionInfo: p.version,
      supplier: 'Organization: Debian',
      downloadLocation: archive && p.filename ? `${archive}/${p.filename}` : 'NOASSERTION',
      filesAnalyzed: false,
      ...(p.sha256 ? { checksums: [{ algorithm: 'SHA256' as const, checksumValue: p.sha256 }] } : {}),
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: debPurl(p) }],
    };
  });

  const image: SpdxPackage = {
    SPDXID: imageId,
    name: input.image.name,
    ...(input.image.version ? { versionInfo: input.image.version } : {}),
    supplier: 'Organization: KubeDos',
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    ...(input.image.sha256 ? { checksums: [{ algorithm: 'SHA256' as const, checksumValue: input.image.sha256 }] } : {}),
    licenseConcluded: 'NOASSERTION',
    licenseDeclared: 'NOASSERTION',
    copyrightText: 'NOASSERTION',
    primaryPackagePurpose: 'OPERATING-SYSTEM',
  };

  const base = (input.namespaceBase ?? `${KUBEDOS_URI_BASE}/spdx`).replace(/\/+$/, '');
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `kubedos-image-${input.image.name}`,
    documentNamespace: `${base}/${encodeURIComponent(input.image.name)}-${digest}`,
    creationInfo: { created: spdxDate(input.sourceDateEpoch), creators: [`Tool: ${input.tool ?? 'kubedos'}`, 'Organization: KubeDos'] },
    packages: [image, ...debs],
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId },
      ...debs.map((d) => ({ spdxElementId: imageId, relationshipType: 'CONTAINS' as const, relatedSpdxElement: d.SPDXID })),
    ],
  };
}

/** The document's bytes as stored: two-space JSON and a trailing newline. */
export function serializeSbom(doc: SpdxDocument): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
