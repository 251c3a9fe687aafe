/**
 * Publishing activity (build pool, on the host that built the image): a thin adapter over
 * src/store/publish. It uploads the staged artifacts to the configured store, then the lock, SBOM
 * and provenance, then the signed publication manifest, and last the ref.
 *
 * - Progress and resume: it heartbeats the bytes sent and, for each multipart upload in flight,
 *   its upload id and the parts the server acknowledged. A retried attempt reads them back from
 *   its heartbeat details and sends only the missing parts.
 * - Idempotent: when the ref already names a complete, signed publication of this very build
 *   manifest, it returns that publication and does nothing else.
 */
import os from 'node:os';
import { Context } from '@temporalio/activity';
import type { BuildManifest } from '../src/foundry/manifest';
import { ArtifactNotStagedError, DigestMismatchError } from '../src/errors';
import { pin } from '../src/store/pins';
import { imageRef } from '../src/store/fetch';
import { parsePublication, publicationDigests, publishBuild as publishToStore } from '../src/store/publish';
import type { FoundrySigner } from '../src/store/signing';
import { signatureRefOf, type ArtifactStore, type UploadCheckpoint } from '../src/store/store';

export interface PublishDeps {
  /** The configured store publications go to (S3 or the local store). */
  store: ArtifactStore;
  /** This host's staging store, where buildImage left the artifacts. @default store */
  staging?: ArtifactStore;
  /** Signs each publication manifest with the Foundry's key. */
  signer: FoundrySigner;
}

export interface PublishBuildInput {
  image: string;
  /** The build manifest blob (BuildImageResult.manifestDigest), staged or already in the store. */
  manifestDigest: string;
  /** The lock blob (BuildImageResult.lockBlob). */
  lockBlob: string;
  /** sha256 of the platform spec, recorded in the provenance. */
  specDigest: string;
  mirror?: string;
  securityMirror?: string;
  /** A verify rebuild: publish under `scratch/<image>` instead of `images/<image>/latest`. */
  scratch?: boolean;
}

export interface PublishedArtifact {
  format: string;
  file: string;
  sha256: string;
  size: number;
  /** Where it is now: a local path for the local store, else `<store location>/blobs/sha256/<hex>`. */
  location: string;
  /** Already in the store: nothing was sent. */
  existed: boolean;
  partsUploaded?: number;
  partsReused?: number;
}

export interface PublishBuildResult {
  /** The ref that makes the publication visible. */
  ref: string;
  /** Digest of the signed publication manifest. */
  publicationDigest: string;
  signatureDigest: string;
  sbomDigest: string;
  provenanceDigest: string;
  artifacts: PublishedArtifact[];
  /** The ref already named a complete publication of this build: nothing was done. */
  reused: boolean;
}

/** Heartbeat details: progress for people, and the resume point for a retried attempt. */
export interface PublishHeartbeat {
  step: string;
  /** Artifact files already in the store. */
  completed: string[];
  bytes: number;
  total: number;
  /** In-flight multipart uploads by artifact file name. */
  uploads: Record<string, UploadCheckpoint>;
}


const HEARTBEAT_MS = 5_000;

/** The task queue only this host's build worker polls for publishBuild (S3 store, local staging). */
export function hostPublishQueue(buildQueue: string, host: string = os.hostname()): string {
  return `${buildQueue}@${host}`;
}

function locationOf(store: ArtifactStore, sha256: string): string {
  return store.localPath(sha256) ?? `${store.location}/blobs/sha256/${sha256}`;
}

async function readText(sources: ArtifactStore[], digest: string, what: string): Promise<string> {
  for (const s of sources) if (await s.has(digest)) return (await s.getBytes(digest)).toString('utf8');
  throw new ArtifactNotStagedError(`${what} sha256:${digest} is neither staged on this host nor in ${sources.at(-1)!.location}`, 'the image is built again, on any build host, and published from there');
}

/**
 * A staged file that no longer hashes to its digest cannot be published: like a missing one, the
 * image must be built again (a non-retryable ArtifactNotStagedError). Other errors pass through.
 */
function stagedCopyDamaged(err: unknown, staging: ArtifactStore): unknown {
  if (!(err instanceof DigestMismatchError)) return err;
  const staged = staging.localPath(err.expected);
  if (!staged || !err.where.startsWith(staged)) return err;
  return new ArtifactNotStagedError(`the staged copy of sha256:${err.expected} is damaged: ${err.message}`, 'the image is built again, on any build host, and published from there', { cause: err });
}

/** The publication the ref names, when it is a complete, signed publication of this build manifest. */
async function findPublished(store: ArtifactStore, ref: string, buildManifestDigest: string): Promise<PublishBuildResult | undefined> {
  const current = await store.getRef(ref);
  if (!current || !(await store.has(current))) return undefined;
  const publication = parsePublication(await store.getBytes(current));
  if (!publication || publication.buildManifest.sha256 !== buildManifestDigest) return undefined;
  const signature = await store.getRef(signatureRefOf(current));
  if (!signature || !(await store.has(signature))) return undefined;
  for (const d of publicationDigests(publication)) if (!(await store.has(d))) return undefined;
  return {
    ref,
    publicationDigest: current,
    signatureDigest: signature,
    sbomDigest: publication.sbom.sha256,
    provenanceDigest: publication.provenance.sha256,
    artifacts: publication.artifacts.map((a) => ({ ...a, location: locationOf(store, a.sha256), existed: true })),
    reused: true,
  };
}

export function createPublishActivities(deps: PublishDeps) {
  const staging = deps.staging ?? deps.store;
  const sources = staging === deps.store ? [deps.store] : [staging, deps.store];
  return {
    /** Publish a staged build: resumable uploads, supply-chain documents, signature, then the ref. */
    async publishBuild(input: PublishBuildInput): Promise<PublishBuildResult> {
      const ctx = Context.current();
      const ref = input.scratch ? `scratch/${input.image}` : imageRef(input.image);
      const done = await findPublished(deps.store, ref, input.manifestDigest);
      if (done) {
        ctx.log.info('already published; nothing to do', { ref, publication: done.publicationDigest });
        return done;
      }

      const manifest = JSON.parse(await readText(sources, input.manifestDigest, 'the build manifest')) as BuildManifest;
      const lockText = await readText(sources, input.lockBlob, 'the lock');
      for (const a of manifest.artifacts) {
        if (!(await deps.store.has(a.sha256)) && !(await staging.has(a.sha256))) {
          throw new ArtifactNotStagedError(
            `${a.file} (sha256:${a.sha256}) is neither staged on this host (${staging.location}) nor in ${deps.store.location}`,
            'the image is built again, on any build host, and published from there',
          );
        }
      }

      // Resume where the previous attempt stopped (its last heartbeat).
      const previous = ctx.info.heartbeatDetails as PublishHeartbeat | undefined;
      const total = manifest.artifacts.reduce((n, a) => n + a.size, 0);
      const beat: PublishHeartbeat = { step: 'publishing', completed: [], bytes: 0, total, uploads: { ...(previous?.uploads ?? {}) } };
      const sizes = new Map(manifest.artifacts.map((a) => [a.file, a.size]));
      const doneBytes = () => beat.completed.reduce((n, f) => n + (sizes.get(f) ?? 0), 0);
      if (previous?.uploads && Object.keys(previous.uploads).length > 0) {
        ctx.log.info('resuming interrupted uploads', { files: Object.keys(previous.uploads), parts: Object.values(previous.uploads).map((u) => u.parts.length) });
      }
      const timer = setInterval(() => ctx.heartbeat(beat), HEARTBEAT_MS);
      ctx.heartbeat(beat);
      try {
        const published = await publishToStore(
          deps.store,
          {
            manifest,
            lockText,
            specDigest: input.specDigest,
            signer: deps.signer,
            mirror: input.mirror,
            securityMirror: input.securityMirror,
            ref,
            invocationId: ctx.info.workflowExecution?.workflowId,
            artifactPath: (a) => staging.localPath(a.sha256),
          },
          {
            signal: ctx.cancellationSignal,
            resume: previous?.uploads,
            onCheckpoint: (file, checkpoint) => {
              beat.uploads[file] = checkpoint;
              ctx.heartbeat(beat);
            },
            onProgress: (file, p) => {
              const finished = p.phase === 'upload' && p.bytes === p.total;
              beat.step = `${p.phase === 'hash' ? 'hashing' : 'uploading'} ${file} ${Math.floor((100 * p.bytes) / Math.max(p.total, 1))}%`;
              if (finished && !beat.completed.includes(file)) {
                beat.completed.push(file);
                delete beat.uploads[file];
              }
              beat.bytes = doneBytes() + (p.phase === 'upload' && !finished ? p.bytes : 0);
              ctx.heartbeat(beat);
            },
          },
        ).catch((err: unknown) => {
          throw stagedCopyDamaged(err, staging);
        });
        beat.step = 'published';
        ctx.heartbeat(beat);
        const byDigest = new Map(published.artifacts.map((a) => [a.sha256, a]));
        return {
          ref: published.ref,
          publicationDigest: published.manifest.sha256,
          signatureDigest: published.signature.sha256,
          sbomDigest: published.sbom.sha256,
          provenanceDigest: published.provenance.sha256,
          artifacts: manifest.artifacts.map(({ format, file, sha256, size }) => {
            const put = byDigest.get(sha256);
            return {
              format, file, sha256, size,
              location: locationOf(deps.store, sha256),
              existed: put?.existed ?? true,
              ...(put?.partsUploaded !== undefined ? { partsUploaded: put.partsUploaded } : {}),
              ...(put?.partsReused !== undefined ? { partsReused: put.partsReused } : {}),
            };
          }),
          reused: false,
        };
      } finally {
        clearInterval(timer);
      }
    },

    /**
     * Pin a publication for each reason (`fleet/<platform>/<fleet>`): what a fleet runs, and may
     * roll back to, survives `kubedos store gc`. Idempotent: pinning twice is harmless.
     */
    async pinPublication(input: { digest: string; reasons: string[] }): Promise<void> {
      for (const reason of input.reasons) await pin(deps.store, input.digest, reason);
    },
  };
}

export type PublishActivities = ReturnType<typeof createPublishActivities>;
