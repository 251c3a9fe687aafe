/**
 * Supply chain: SBOM (SPDX 2.3), provenance (in-toto + SLSA v1), SSHSIG manifest signatures,
 * publishBuild → verifyArtifact, and gc — on the local store and on a real S3 server.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BuildManifest } from '../../src/foundry/manifest';
import { lockDigest, serializeLock, type Lock } from '../../src/foundry/lock';
import { ArtifactNotPublishedError, DigestMismatchError, SignatureInvalidError } from '../../src/errors';
import { runTool } from '../../src/exec/run';
import { gc } from '../../src/store/gc';
import { LocalStore } from '../../src/store/local';
import { buildProvenance, IN_TOTO_STATEMENT_TYPE, SLSA_PROVENANCE_TYPE } from '../../src/store/provenance';
import { parsePublication, publishBuild } from '../../src/store/publish';
import { blobKey } from '../../src/store/s3';
import { buildSbom, debPurl, packagesFromDpkgStatus, packagesFromLock, serializeSbom, type SpdxDocument } from '../../src/store/sbom';
import { FoundrySigner, verifySignature } from '../../src/store/signing';
import { signatureRefOf, type ArtifactStore } from '../../src/store/store';
import { verifyArtifact } from '../../src/store/verify';
import { startS3Server, type S3TestServer } from '../support/s3-server';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');
const EPOCH = 1_700_000_000;

const LOCK: Lock = {
  lockVersion: 1,
  suite: 'bookworm',
  architecture: 'amd64',
  baseInputs: hex('base'),
  packages: [
    { name: 'bash', version: '5.2.15-2+b7', architecture: 'amd64', sha256: hex('bash'), filename: 'pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb', origin: 'mirror' },
    { name: 'libc6', version: '2.36-9+deb12u10', architecture: 'amd64', sha256: hex('libc6'), filename: 'pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb', origin: 'security' },
    { name: 'tzdata', version: '2025b-0+deb12u1', architecture: 'all', sha256: hex('tzdata'), filename: 'pool/main/t/tzdata/tzdata_2025b-0+deb12u1_all.deb', origin: 'mirror' },
    { name: 'libstdc++6', version: '1:12.2.0-14+deb12u1', architecture: 'amd64', sha256: hex('libstdc'), filename: 'pool/main/g/gcc-12/libstdc++6_12.2.0-14+deb12u1_amd64.deb', origin: 'mirror' },
  ],
};

const DPKG_STATUS = `Package: bash
Status: install ok installed
Priority: required
Architecture: amd64
Version: 5.2.15-2+b7
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2025b-0+deb12u1
`;

// ---- SPDX 2.3: the structural requirements of the spec (the official JSON schema is not
// available offline and no npm package ships it; see the report).
const SPDX_ID = /^SPDXRef-[A-Za-z0-9.-]+$/;
const RELATIONSHIP_TYPES = new Set(['DESCRIBES', 'DESCRIBED_BY', 'CONTAINS', 'CONTAINED_BY', 'DEPENDS_ON', 'GENERATED_FROM', 'OTHER']);
const PURPOSES = new Set(['APPLICATION', 'FRAMEWORK', 'LIBRARY', 'CONTAINER', 'OPERATING-SYSTEM', 'DEVICE', 'FIRMWARE', 'SOURCE', 'ARCHIVE', 'FILE', 'INSTALL', 'OTHER']);
const CHECKSUM_ALGORITHMS = new Set(['SHA1', 'SHA224', 'SHA256', 'SHA384', 'SHA512', 'SHA3-256', 'SHA3-384', 'SHA3-512', 'BLAKE2b-256', 'BLAKE2b-384', 'BLAKE2b-512', 'BLAKE3', 'MD2', 'MD4', 'MD5', 'MD6', 'ADLER32']);
const REF_CATEGORIES = new Set(['SECURITY', 'PACKAGE-MANAGER', 'PACKAGE_MANAGER', 'PERSISTENT-ID', 'PERSISTENT_ID', 'OTHER']);

function spdxProblems(doc: SpdxDocument): string[] {
  const p: string[] = [];
  const need = (cond: boolean, what: string) => cond || p.push(what);
  need(doc.spdxVersion === 'SPDX-2.3', 'spdxVersion must be SPDX-2.3');
  need(doc.dataLicense === 'CC0-1.0', 'dataLicense must be CC0-1.0');
  need(doc.SPDXID === 'SPDXRef-DOCUMENT', 'document SPDXID must be SPDXRef-DOCUMENT');
  need(typeof doc.name === 'string' && doc.name.length > 0, 'document name required');
  need(/^[a-z][a-z0-9+.-]*:[^#\s]+$/i.test(doc.documentNamespace), 'documentNamespace must be an absolute URI without #');
  need(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(doc.creationInfo?.created ?? ''), 'creationInfo.created must be YYYY-MM-DDThh:mm:ssZ');
  need(Array.isArray(doc.creationInfo?.creators) && doc.creationInfo.creators.length > 0, 'creationInfo.creators required');
  for (const c of doc.creationInfo?.creators ?? []) need(/^(Person|Organization|Tool): \S/.test(c), `creator "${c}" malformed`);
  const ids = new Set<string>(['SPDXRef-DOCUMENT']);
  for (const pkg of doc.packages) {
    need(SPDX_ID.test(pkg.SPDXID), `package SPDXID ${pkg.SPDXID} malformed`);
    need(!ids.has(pkg.SPDXID), `duplicate SPDXID ${pkg.SPDXID}`);
    ids.add(pkg.SPDXID);
    need(typeof pkg.name === 'string' && pkg.name.length > 0, `${pkg.SPDXID}: name required`);
    need(pkg.downloadLocation === 'NOASSERTION' || pkg.downloadLocation === 'NONE' || /^https?:\/\/\S+$/.test(pkg.downloadLocation), `${pkg.SPDXID}: downloadLocation`);
    need(pkg.supplier === undefined || /^(Person|Organization): \S|^NOASSERTION$/.test(pkg.supplier), `${pkg.SPDXID}: supplier`);
    need(pkg.filesAnalyzed === false && !('packageVerificationCode' in pkg), `${pkg.SPDXID}: filesAnalyzed false without verification code`);
    for (const c of pkg.checksums ?? []) {
      need(CHECKSUM_ALGORITHMS.has(c.algorithm), `${pkg.SPDXID}: checksum algorithm ${c.algorithm}`);
      need(c.algorithm !== 'SHA256' || /^[0-9a-f]{64}$/.test(c.checksumValue), `${pkg.SPDXID}: SHA256 value`);
    }
    for (const r of pkg.externalRefs ?? []) {
      need(REF_CATEGORIES.has(r.referenceCategory), `${pkg.SPDXID}: referenceCategory`);
      need(r.referenceType !== 'purl' || /^pkg:[a-z]+\/[^\s@?#]+@[^\s?#]+(\?[^\s#]*)?$/.test(r.referenceLocator), `${pkg.SPDXID}: purl ${r.referenceLocator}`);
    }
    need(pkg.primaryPackagePurpose === undefined || PURPOSES.has(pkg.primaryPackagePurpose), `${pkg.SPDXID}: primaryPackagePurpose`);
    for (const f of ['licenseConcluded', 'licenseDeclared', 'copyrightText'] as const) need(typeof pkg[f] === 'string', `${pkg.SPDXID}: ${f}`);
  }
  for (const r of doc.relationships) {
    need(ids.has(r.spdxElementId) && ids.has(r.relatedSpdxElement), `relationship ${r.spdxElementId} → ${r.relatedSpdxElement} names unknown elements`);
    need(RELATIONSHIP_TYPES.has(r.relationshipType), `relationshipType ${r.relationshipType}`);
  }
  need(doc.relationships.some((r) => r.spdxElementId === 'SPDXRef-DOCUMENT' && r.relationshipType === 'DESCRIBES'), 'the document must DESCRIBE something');
  return p;
}

/**
 * The SPDX project's own validator (PyPI spdx-tools, `pyspdxtools`), when installed: in .venv
 * (`.venv/bin/pip install spdx-tools==0.8.5`) or named by KUBEDOS_TEST_PYSPDXTOOLS.
 */
function pyspdxtools(): string | undefined {
  const candidates = [process.env.KUBEDOS_TEST_PYSPDXTOOLS, path.resolve(__dirname, '..', '..', '.venv', 'bin', 'pyspdxtools')];
  return candidates.find((c): c is string => Boolean(c) && existsSync(c!));
}

describe('SBOM', () => {
  const input = { image: { name: 'web', version: hex('input') }, packages: packagesFromLock(LOCK), sourceDateEpoch: EPOCH, mirror: 'http://deb.debian.org/debian', securityMirror: 'http://security.debian.org/debian-security' };

  test('is a valid SPDX 2.3 document with one package per .deb', () => {
    const doc = buildSbom(input);
    expect(spdxProblems(doc)).toEqual([]);
    expect(doc.creationInfo.created).toBe('2023-11-14T22:13:20Z');
    expect(doc.packages).toHaveLength(1 + LOCK.packages.length);
    const libc = doc.packages.find((p) => p.name === 'libc6')!;
    expect(libc).toMatchObject({
      versionInfo: '2.36-9+deb12u10',
      supplier: 'Organization: Debian',
      downloadLocation: 'http://security.debian.org/debian-security/pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb',
      checksums: [{ algorithm: 'SHA256', checksumValue: hex('libc6') }],
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: 'pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64' }],
    });
    expect(debPurl({ name: 'libstdc++6', version: '1:12.2.0-14', architecture: 'amd64' })).toBe('pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64');
    expect(doc.relationships[0]).toEqual({ spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: 'SPDXRef-Image-web' });
    expect(doc.relationships.filter((r) => r.relationshipType === 'CONTAINS')).toHaveLength(LOCK.packages.length);
    expect(buildSbom({ ...input, mirror: undefined, securityMirror: undefined }).packages[1]!.downloadLocation).toBe('NOASSERTION');
  });

  test('passes the SPDX project validator (pyspdxtools, installed by scripts/setup --tests)', async () => {
    const validator = pyspdxtools();
    if (!validator) throw new Error('pyspdxtools is missing: run scripts/setup --tests');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-spdx-'));
    try {
      const good = path.join(dir, 'image.spdx.json');
      await fs.writeFile(good, serializeSbom(buildSbom(input)));
      await runTool([validator!, '--version', 'SPDX-2.3', '-i', good]);
      const fromStatus = path.join(dir, 'status.spdx.json');
      await fs.writeFile(fromStatus, serializeSbom(buildSbom({ image: { name: 'web' }, packages: packagesFromDpkgStatus(DPKG_STATUS), sourceDateEpoch: EPOCH })));
      await runTool([validator!, '--version', 'SPDX-2.3', '-i', fromStatus]);
      // And it does refuse a broken one.
      const broken = path.join(dir, 'broken.spdx.json');
      await fs.writeFile(broken, serializeSbom({ ...buildSbom(input), creationInfo: { created: 'yesterday', creators: [] } }));
      await expect(runTool([validator!, '--version', 'SPDX-2.3', '-i', broken])).rejects.toThrow();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('is deterministic: same input, same bytes; other input, other namespace', () => {
    const a = serializeSbom(buildSbom(input));
    const b = serializeSbom(buildSbom({ ...input, packages: [...input.packages].reverse() }));
    expect(b).toBe(a);
    const other = buildSbom({ ...input, sourceDateEpoch: EPOCH + 1 });
    expect(other.documentNamespace).not.toBe(buildSbom(input).documentNamespace);
    expect(buildSbom(input).documentNamespace).toMatch(/^https:\/\/kubedos\.invalid\/spdx\/web-[0-9a-f]{64}$/);
  });

  test('from a dpkg status file, with checksums from the lock', () => {
    const packages = packagesFromDpkgStatus(DPKG_STATUS, LOCK);
    expect(packages.map((p) => p.name)).toEqual(['bash', 'tzdata']);
    expect(packages[0]!.sha256).toBe(hex('bash'));
    const doc = buildSbom({ image: { name: 'web' }, packages, sourceDateEpoch: EPOCH });
    expect(spdxProblems(doc)).toEqual([]);
    const bare = buildSbom({ image: { name: 'web' }, packages: packagesFromDpkgStatus(DPKG_STATUS), sourceDateEpoch: EPOCH });
    expect(spdxProblems(bare)).toEqual([]);
    expect(bare.packages[1]!.checksums).toBeUndefined();
  });
});

test('provenance: an in-toto statement with a SLSA v1 predicate naming every artifact', () => {
  const st = buildProvenance({
    subjects: [{ name: 'web.raw', sha256: hex('raw') }, { name: 'web.qcow2', sha256: hex('qcow2') }],
    image: { name: 'web', role: 'worker' },
    specDigest: hex('spec'),
    lockDigest: hex('lock'),
    inputDigest: hex('input'),
    sourceDateEpoch: EPOCH,
    mirror: 'http://deb.debian.org/debian',
  });
  expect(st._type).toBe(IN_TOTO_STATEMENT_TYPE);
  expect(st.predicateType).toBe(SLSA_PROVENANCE_TYPE);
  expect(st.subject).toEqual([
    { name: 'web.qcow2', digest: { sha256: hex('qcow2') } },
    { name: 'web.raw', digest: { sha256: hex('raw') } },
  ]);
  expect(st.predicate.buildDefinition.externalParameters).toEqual({ spec: { digest: { sha256: hex('spec') } }, image: { name: 'web', role: 'worker' } });
  expect(st.predicate.buildDefinition.resolvedDependencies).toEqual([
    { name: 'kubedos.lock', digest: { sha256: hex('lock') }, mediaType: 'application/json' },
    { name: 'debian-mirror', uri: 'http://deb.debian.org/debian' },
  ]);
  expect(st.predicate.runDetails.metadata).toEqual({ invocationId: `urn:kubedos:build:${hex('input')}`, startedOn: '2023-11-14T22:13:20Z', finishedOn: '2023-11-14T22:13:20Z' });
  expect(st.predicate.buildDefinition.buildType).toMatch(/^https:\/\//);
});

// ---- signing, publishing, verifying, collecting: on both backends

let tmp: string;
let server: S3TestServer;
let signer: FoundrySigner;
let allowedSigners: string;
let otherSigners: string;
const s3Stores: { destroy(): void }[] = [];

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-supply-'));
  server = await startS3Server('kubedos-supply');
  signer = new FoundrySigner(path.join(tmp, 'keys', 'foundry_ed25519'));
  allowedSigners = path.join(tmp, 'allowed_signers');
  await fs.writeFile(allowedSigners, `${await signer.allowedSignersLine()}\n`);
  const other = new FoundrySigner(path.join(tmp, 'other-keys', 'foundry_ed25519'));
  otherSigners = path.join(tmp, 'other_signers');
  await fs.writeFile(otherSigners, `${await other.allowedSignersLine()}\n`);
});

afterAll(async () => {
  for (const s of s3Stores) s.destroy();
  await server?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('the signing key is ed25519, private mode 0600, generated once', async () => {
  const st = await fs.stat(signer.keyFile);
  expect(st.mode & 0o777).toBe(0o600);
  expect(await signer.publicKey()).toMatch(/^ssh-ed25519 \S+ kubedos-foundry$/);
  expect(await signer.allowedSignersLine()).toMatch(/^kubedos-foundry namespaces="kubedos-manifest" ssh-ed25519 \S+$/);
  const again = new FoundrySigner(signer.keyFile);
  await again.ensureKey();
  expect(await again.publicKey()).toBe(await signer.publicKey());
});

test('signatures verify with the stock ssh-keygen command; wrong data or key is refused', async () => {
  const data = Buffer.from('{"schema":"kubedos.publication/v1"}\n');
  const sig = await signer.sign(data);
  await verifySignature(data, sig, { allowedSigners });
  // The documented command, verbatim (stdin redirected from the file).
  const dir = path.join(tmp, 'stock');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'manifest.json'), data);
  await fs.writeFile(path.join(dir, 'manifest.json.sig'), sig);
  const { stdout } = await runTool(
    ['sh', '-c', 'ssh-keygen -Y verify -f "$1" -I kubedos-foundry -n kubedos-manifest -s manifest.json.sig < manifest.json', 'sh', allowedSigners],
    { cwd: dir },
  );
  expect(stdout).toMatch(/Good "kubedos-manifest" signature for kubedos-foundry/);

  const flipped = Buffer.from(data);
  flipped[3] ^= 1;
  await expect(verifySignature(flipped, sig, { allowedSigners, subject: 'the manifest' })).rejects.toThrow(SignatureInvalidError);
  await expect(verifySignature(data, sig, { allowedSigners: otherSigners })).rejects.toThrow(/is not valid/);
  await expect(verifySignature(data, 'garbage', { allowedSigners })).rejects.toThrow(/not an SSH signature/);
});

interface Backend {
  name: string;
  make: () => ArtifactStore;
  /** Flip one byte of a stored blob behind the store's back. */
  corrupt: (store: ArtifactStore, sha256: string) => Promise<void>;
}

async function flipByte(file: string, at = 0): Promise<void> {
  await fs.chmod(file, 0o644);
  const handle = await fs.open(file, 'r+');
  const one = Buffer.alloc(1);
  await handle.read(one, 0, 1, at);
  one[0] ^= 0x80;
  await handle.write(one, 0, 1, at);
  await handle.close();
}

const backends: Backend[] = [
  {
    name: 'local',
    make: () => new LocalStore(path.join(tmp, `store-${Math.random().toString(36).slice(2)}`)),
    corrupt: (store, sha256) => flipByte(store.localPath(sha256)!),
  },
  {
    name: 's3',
    make: () => {
      const store = server.store();
      s3Stores.push(store);
      return store;
    },
    corrupt: (_store, sha256) => flipByte(server.objectFile(blobKey(sha256))),
  },
];

/** A fake build output: two artifacts, the manifest that names them, the lock. */
async function fakeBuild(name: string, seed: string): Promise<{ outputDir: string; manifest: BuildManifest; lockText: string }> {
  const outputDir = await fs.mkdtemp(path.join(tmp, `out-${name}-`));
  const artifacts: BuildManifest['artifacts'] = [];
  for (const [format, file] of [['raw', `${name}.raw`], ['qcow2', `${name}.qcow2`]] as const) {
    const bytes = Buffer.from(`${seed}:${format}:`.repeat(1000));
    await fs.writeFile(path.join(outputDir, file), bytes);
    artifacts.push({ format, file, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length });
  }
  const lockText = serializeLock(LOCK);
  const manifest: BuildManifest = {
    schema: 'kubedos.build-manifest/v1',
    image: { name, role: 'worker', hostname: name },
    inputDigest: hex(`input:${seed}`),
    layerDigest: hex(`layer:${seed}`),
    lockDigest: lockDigest(LOCK),
    sourceDateEpoch: EPOCH,
    diskSizeBytes: 1 << 30,
    artifacts,
  };
  return { outputDir, manifest, lockText };
}

describe.each(backends)('$name store', (backend) => {
  test('publishBuild makes a signed publication that verifyArtifact accepts; tampering is refused', async () => {
    const store = backend.make();
    const build = await fakeBuild('web', `web-${backend.name}`);
    const result = await publishBuild(store, { ...build, specDigest: hex('spec'), signer, mirror: 'http://deb.debian.org/debian' });
    expect(result.ref).toBe('images/web/latest');
    expect(await store.getRef('images/web/latest')).toBe(result.manifest.sha256);
    const publication = parsePublication(await store.getBytes(result.manifest.sha256))!;
    expect(publication.artifacts.map((a) => a.sha256)).toEqual(build.manifest.artifacts.map((a) => a.sha256));
    const sbom = JSON.parse((await store.getBytes(publication.sbom.sha256)).toString()) as SpdxDocument;
    expect(spdxProblems(sbom)).toEqual([]);
    const provenance = JSON.parse((await store.getBytes(publication.provenance.sha256)).toString()) as ReturnType<typeof buildProvenance>;
    expect(provenance.subject.map((s) => s.digest.sha256).sort()).toEqual(build.manifest.artifacts.map((a) => a.sha256).sort());

    // Publishing the same build again stores nothing new and yields the same manifest.
    const again = await publishBuild(store, { ...build, specDigest: hex('spec'), signer, mirror: 'http://deb.debian.org/debian' });
    expect(again.manifest).toEqual(result.manifest);
    expect(again.artifacts.every((a) => a.existed)).toBe(true);

    const raw = build.manifest.artifacts[0]!;
    const ok = await verifyArtifact(store, raw.sha256, { allowedSigners });
    expect(ok).toMatchObject({ sha256: raw.sha256, size: raw.size, manifest: result.manifest.sha256 });
    await verifyArtifact(store, raw.sha256, { allowedSigners, ref: 'images/web/latest', file: path.join(build.outputDir, raw.file) });

    // A key that is not trusted.
    const untrusted = await verifyArtifact(store, raw.sha256, { allowedSigners: otherSigners }).catch((e: unknown) => e);
    expect(untrusted).toBeInstanceOf(SignatureInvalidError);
    expect((untrusted as Error).message).toContain(`manifest sha256:${result.manifest.sha256}`);
    // A signature by the right key, but of other bytes.
    const wrongSig = await store.putBytes(await signer.sign(Buffer.from('some other manifest\n')));
    const goodSig = (await store.getRef(signatureRefOf(result.manifest.sha256)))!;
    await store.setRef(signatureRefOf(result.manifest.sha256), wrongSig.sha256);
    await expect(verifyArtifact(store, raw.sha256, { allowedSigners })).rejects.toBeInstanceOf(SignatureInvalidError);
    await store.setRef(signatureRefOf(result.manifest.sha256), goodSig);

    // A blob no manifest references.
    const stray = await store.putBytes('not published');
    await expect(verifyArtifact(store, stray.sha256, { allowedSigners })).rejects.toBeInstanceOf(ArtifactNotPublishedError);

    // A flipped byte in the artifact.
    await backend.corrupt(store, raw.sha256);
    const flipped = await verifyArtifact(store, raw.sha256, { allowedSigners }).catch((e: unknown) => e);
    expect(flipped).toBeInstanceOf(DigestMismatchError);
    expect((flipped as Error).message).toMatch(/hashes to sha256:[0-9a-f]{64}, expected sha256:/);
  });

  test('gc removes unreferenced blobs, keeps pinned and published ones; dry run removes nothing', async () => {
    const store = backend.make();
    // A clean slate on the shared bucket.
    for (const r of await store.listRefs()) await store.deleteRef(r);
    for (const b of await store.listBlobs()) await store.deleteBlob(b.sha256);

    const web = await fakeBuild('web', `gc-web-${backend.name}`);
    const old = await fakeBuild('old', `gc-old-${backend.name}`);
    const pub = await publishBuild(store, { ...web, specDigest: hex('spec'), signer });
    const oldPub = await publishBuild(store, { ...old, specDigest: hex('spec'), signer });
    const stray = await store.putBytes('unreferenced');
    const pinned = await store.putBytes('pinned golden image');
    await store.setRef('pins/golden', pinned.sha256);

    // Young blobs are protected by the grace period.
    expect((await gc(store)).removedBlobs).toEqual([]);

    const dry = await gc(store, { keep: ['images/web/'], minAgeMs: 0, dryRun: true });
    const gone = new Set(dry.removedBlobs.map((b) => b.sha256));
    expect(gone.has(stray.sha256)).toBe(true);
    expect(gone.has(pinned.sha256)).toBe(false);
    expect(gone.has(oldPub.manifest.sha256)).toBe(true);
    for (const a of old.manifest.artifacts) expect(gone.has(a.sha256)).toBe(true);
    for (const a of web.manifest.artifacts) expect(gone.has(a.sha256)).toBe(false);
    expect(gone.has(pub.signature.sha256)).toBe(false);
    expect(gone.has(pub.sbom.sha256)).toBe(false);
    expect(gone.has(pub.sbom.sha256)).toBe(false);
    expect(dry.removedRefs).toEqual(['images/old/latest', signatureRefOf(oldPub.manifest.sha256)]);
    expect(await store.has(stray.sha256)).toBe(true); // dry run

    const real = await gc(store, { keep: ['images/web/'], minAgeMs: 0 });
    expect(real.removedBlobs.map((b) => b.sha256).sort()).toEqual([...gone].sort());
    expect(await store.has(stray.sha256)).toBe(false);
    expect(await store.has(pinned.sha256)).toBe(true);
    expect(await store.listRefs()).toEqual(['images/web/latest', 'pins/golden', signatureRefOf(pub.manifest.sha256)].sort());
    // The kept publication still verifies end to end.
    await verifyArtifact(store, web.manifest.artifacts[1]!.sha256, { allowedSigners });
    // Nothing left to collect.
    expect((await gc(store, { minAgeMs: 0 })).removedBlobs).toEqual([]);
  });
});
