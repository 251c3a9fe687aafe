/**
 * `prepare` of the aws target: the ami artifact becomes an AMI once per artifact digest, target
 * and region.
 *
 * 1. An AMI tagged with the artifact's sha256 (and owned by this target) exists: done, no other
 *    call. A snapshot tagged so exists (a prepare that died before RegisterImage): go to 4.
 * 2. Upload the VMDK to `s3://<importBucket>/<importPrefix><sha256>.vmdk` with the store's
 *    resumable multipart upload (src/store/s3-multipart.ts: SHA256 per part, checked by S3; the
 *    whole file's digest checked before completing). An object already there with that size and
 *    digest is not sent again; an interrupted upload resumes from its checkpoint.
 * 3. `ImportSnapshot` (format VMDK, the VM Import role) with a ClientToken derived from the
 *    digest and the uploaded object's time stamp, so asking again for the same object returns the
 *    same task: a retried step never starts a second import. The task is polled with
 *    `DescribeImportSnapshotTasks`; every poll heartbeats the task id, and a retried activity
 *    resumes polling that very task from its heartbeat details. `deleted`/`deleting` (failed) is
 *    reported with AWS's status message, and so is a task that makes no progress for too long
 *    (it is left running: the next deploy resumes polling it). The snapshot is tagged.
 * 4. `RegisterImage`: boot mode uefi, ENA, x86_64, hvm, IMDSv2 only, the root device mapping
 *    (AMI_IMPORT, src/foundry/formats/ami.ts, says what the artifact needs), tagged with the
 *    artifact's and the image's digests; a duplicate name (another worker, or a tag lost before
 *    a crash) is resolved by finding the AMI of that snapshot.
 * 5. The uploaded object is deleted (the snapshot holds the bytes now).
 */
import { createHash } from 'node:crypto';
import {
  CreateTagsCommand,
  DescribeImagesCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeSnapshotsCommand,
  ImportSnapshotCommand,
  RegisterImageCommand,
  type Filter,
  type Image,
  type SnapshotTaskDetail,
} from '@aws-sdk/client-ec2';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { ArtifactRequiredError, AwsImportFailedError, AwsInvalidRequestError, CancelledError } from '../../errors';
import { AMI_IMPORT } from '../../foundry/formats/ami';
import { logger } from '../../log';
import { headS3Object, putMultipart, type S3Bucket } from '../../store/s3-multipart';
import type { UploadCheckpoint } from '../../store/store';
import type { DriverContext, ImageSource, PreparedImage } from '../driver';
import { awsError, awsErrorCode, baseTags, call, ownedFilters, TAG, tagList, type AwsClients } from './api';
import type { AwsTargetSpec } from './index';

const MiB = 1024 * 1024;

export interface ImportSettings {
  /** Between two DescribeImportSnapshotTasks. @default 15 s */
  pollIntervalMs: number;
  /** No change of progress or status message for this long: reported as stalled. @default 60 min */
  stallTimeoutMs: number;
  /** Multipart part size. @default 64 MiB */
  partSize: number;
}

export const DEFAULT_IMPORT_SETTINGS: ImportSettings = { pollIntervalMs: 15_000, stallTimeoutMs: 60 * 60_000, partSize: 64 * MiB };

/** What a retried prepare continues from (heartbeat details; ids and checkpoints only). */
export interface ImportResume {
  sha256: string;
  key?: string;
  upload?: UploadCheckpoint;
  importTaskId?: string;
}

function resumeOf(resumed: Record<string, unknown> | undefined, sha256: string): ImportResume {
  const r = resumed?.awsImport as Partial<ImportResume> | undefined;
  if (!r || r.sha256 !== sha256) return { sha256 };
  return {
    sha256,
    ...(typeof r.key === 'string' ? { key: r.key } : {}),
    ...(typeof r.importTaskId === 'string' && /^import-snap-[0-9a-f]+$/.test(r.importTaskId) ? { importTaskId: r.importTaskId } : {}),
    ...(r.upload && typeof r.upload === 'object' ? { upload: r.upload } : {}),
  };
}

/** The ImportSnapshot idempotency token of one uploaded object (64 ASCII characters at most). */
export function importToken(region: string, sha256: string, uploadedAt: string): string {
  return `kubedos-${createHash('sha256').update(`${region}\n${sha256}\n${uploadedAt}`).digest('hex').slice(0, 48)}`;
}

/** The AMI name of an artifact (unique per region and account: names the image and the digest). */
export function amiName(imageName: string, sha256: string): string {
  return `kubedos-${imageName}-${sha256.slice(0, 16)}`.slice(0, 128);
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

export class AmiImporter {
  private readonly bucket: S3Bucket;

  constructor(
    private readonly name: string,
    private readonly spec: AwsTargetSpec,
    private readonly clients: AwsClients,
    private readonly settings: ImportSettings,
  ) {
    this.bucket = {
      client: clients.s3,
      bucket: spec.importBucket,
      location: `s3://${spec.importBucket}`,
      wrap: (what, err) => awsError(this.name, `S3 ${what}`, err, clients.credentialSource),
    };
  }

  private call<T>(operation: string, run: (abortSignal?: AbortSignal) => Promise<T>, ctx: DriverContext): Promise<T> {
    return call(this.name, this.clients, operation, run, ctx.signal);
  }

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    const artifact = image.artifact;
    if (!artifact) throw new ArtifactRequiredError(this.name, 'aws', ['ami']);
    if (artifact.format !== 'ami') throw new ArtifactRequiredError(this.name, 'aws', ['ami'], artifact.format);
    if (!/^[0-9a-f]{64}$/.test(artifact.sha256)) throw new TypeError(`invalid artifact sha256 ${JSON.stringify(artifact.sha256)}`);
    const sha256 = artifact.sha256;

    const existing = await this.findImage(sha256, ctx);
    if (existing) return { digest: image.digest, location: existing };

    let snapshotId = await this.findSnapshot(sha256, ctx);
    const state = resumeOf(ctx.previous?.resume, sha256);
    const key = `${this.spec.importPrefix}${sha256}.vmdk`;
    const report = (step: string, done?: number, total?: number) => ctx.progress?.({ step, done, total, resume: { awsImport: { ...state } } });
    if (!snapshotId) {
      let task = state.importTaskId ? await this.describeTask(state.importTaskId, ctx) : undefined;
      if (task) logger.info({ target: this.name, importTaskId: state.importTaskId }, 'resuming the import task of an earlier attempt');
      if (!task) {
        const uploadedAt = await this.upload(artifact, key, state, report, ctx);
        task = await this.startImport(image.name, sha256, key, uploadedAt, ctx);
        state.importTaskId = task.id;
        report(`import ${task.id} started`);
      }
      snapshotId = await this.poll(task.id, task.detail, key, report, ctx);
      await this.call('CreateTags', (abortSignal) => this.clients.ec2.send(new CreateTagsCommand({ Resources: [snapshotId!], Tags: tagList(this.artifactTags(image, sha256)) }), { abortSignal }), ctx);
    }
    const imageId = await this.register(image, sha256, snapshotId, ctx);
    report(`AMI ${imageId} registered`);
    await this.removeUpload(key);
    return { digest: image.digest, location: imageId };
  }

  private artifactTags(image: ImageSource, sha256: string): Record<string, string> {
    return { ...baseTags(this.name, this.spec), [TAG.image]: image.name, [TAG.imageDigest]: image.digest, [TAG.artifactSha256]: sha256 };
  }

  /** An AMI of this target for the artifact, waiting while it is pending; undefined when there is none. */
  async findImage(sha256: string, ctx: DriverContext): Promise<string | undefined> {
    for (;;) {
      const images = await this.describeImages({ filters: ownedFilters(this.name, { [TAG.artifactSha256]: sha256 }) }, ctx);
      const usable = images.filter((i) => i.State === 'available' || i.State === 'pending');
      const available = usable.find((i) => i.State === 'available');
      if (available) return available.ImageId;
      if (!usable.length) return undefined;
      ctx.progress?.({ step: `AMI ${usable[0]!.ImageId} pending` });
      await sleep(Math.min(this.settings.pollIntervalMs, 5_000), ctx.signal);
      if (ctx.signal?.aborted) throw new CancelledError(`waiting for AMI ${usable[0]!.ImageId}`);
    }
  }

  private async describeImages(q: { filters?: Filter[]; ids?: string[] }, ctx: DriverContext): Promise<Image[]> {
    const res = await this.call(
      'DescribeImages',
      (abortSignal) => this.clients.ec2.send(new DescribeImagesCommand({ Owners: ['self'], Filters: q.filters, ImageIds: q.ids }), { abortSignal }),
      ctx,
    );
    return res.Images ?? [];
  }

  private async findSnapshot(sha256: string, ctx: DriverContext): Promise<string | undefined> {
    const res = await this.call(
      'DescribeSnapshots',
      (abortSignal) => this.clients.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: ownedFilters(this.name, { [TAG.artifactSha256]: sha256 }) }), { abortSignal }),
      ctx,
    );
    return res.Snapshots?.find((s) => s.State === 'completed')?.SnapshotId;
  }

  /** Upload the artifact unless the object is there already; returns the object's time stamp (part of the import token). */
  private async upload(artifact: NonNullable<ImageSource['artifact']>, key: string, state: ImportResume, report: (step: string, done?: number, total?: number) => void, ctx: DriverContext): Promise<string> {
    const head = await headS3Object(this.bucket, key, ctx.signal);
    if (head && head.size === artifact.size && head.metadata.sha256 === artifact.sha256 && head.modified) {
      logger.info({ target: this.name, key }, 'the artifact is already in the import bucket');
      return head.modified.toISOString();
    }
    state.key = key;
    report(`uploading to s3://${this.spec.importBucket}/${key}`, 0, artifact.size);
    await putMultipart(this.bucket, artifact.path, { sha256: artifact.sha256, size: artifact.size }, key, {
      partSize: this.settings.partSize,
      signal: ctx.signal,
      resume: state.upload?.key === key ? state.upload : undefined,
      onCheckpoint: (checkpoint) => {
        state.upload = checkpoint;
        report(`uploading to s3://${this.spec.importBucket}/${key}`, checkpoint.parts.length * checkpoint.partSize, artifact.size);
      },
      onProgress: (p) => report(`uploading to s3://${this.spec.importBucket}/${key}`, p.bytes, p.total),
    });
    delete state.upload;
    const after = await headS3Object(this.bucket, key, ctx.signal);
    if (!after?.modified) throw new AwsInvalidRequestError(this.name, 'HeadObject', 'NoSuchKey', `s3://${this.spec.importBucket}/${key} is gone right after its upload`, 'something deletes objects under importPrefix: give KubeDos a prefix of its own');
    return after.modified.toISOString();
  }

  private async startImport(imageName: string, sha256: string, key: string, uploadedAt: string, ctx: DriverContext): Promise<{ id: string; detail?: SnapshotTaskDetail }> {
    const res = await this.call(
      'ImportSnapshot',
      (abortSignal) =>
        this.clients.ec2.send(
          new ImportSnapshotCommand({
            ClientToken: importToken(this.spec.region, sha256, uploadedAt),
            Description: `KubeDos ${imageName} sha256:${sha256}`,
            DiskContainer: {
              Description: `${imageName}.ami.vmdk`,
              Format: AMI_IMPORT.diskContainerFormat,
              UserBucket: { S3Bucket: this.spec.importBucket, S3Key: key },
            },
            RoleName: this.spec.importRole,
            TagSpecifications: [{ ResourceType: 'import-snapshot-task', Tags: tagList({ ...baseTags(this.name, this.spec), [TAG.artifactSha256]: sha256 }) }],
          }),
          { abortSignal },
        ),
      ctx,
    );
    if (!res.ImportTaskId) throw new AwsImportFailedError(this.name, '(none)', 'not started', 'ImportSnapshot returned no task id');
    logger.info({ target: this.name, importTaskId: res.ImportTaskId, key }, 'import task started');
    return { id: res.ImportTaskId, detail: res.SnapshotTaskDetail };
  }

  /** The task's detail; undefined when AWS does not know the id (expired after 7 days, another account). */
  private async describeTask(id: string, ctx: DriverContext): Promise<{ id: string; detail?: SnapshotTaskDetail } | undefined> {
    try {
      const res = await this.clients.ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [id] }), { abortSignal: ctx.signal });
      const task = res.ImportSnapshotTasks?.find((t) => t.ImportTaskId === id);
      return task ? { id, detail: task.SnapshotTaskDetail } : undefined;
    } catch (err) {
      if (/^InvalidConversionTaskId/.test(awsErrorCode(err))) return undefined;
      throw awsError(this.name, 'DescribeImportSnapshotTasks', err, this.clients.credentialSource);
    }
  }

  /** Poll until the task completes (its snapshot id), fails or stalls. */
  private async poll(id: string, first: SnapshotTaskDetail | undefined, key: string, report: (step: string, done?: number, total?: number) => void, ctx: DriverContext): Promise<string> {
    let detail = first;
    let lastChange = Date.now();
    let seen = '';
    for (;;) {
      if (detail) {
        const status = detail.Status ?? 'unknown';
        const message = detail.StatusMessage ?? '';
        if (status === 'completed') {
          if (!detail.SnapshotId) throw new AwsImportFailedError(this.name, id, status, `${message} (no SnapshotId)`);
          logger.info({ target: this.name, importTaskId: id, snapshotId: detail.SnapshotId }, 'import completed');
          return detail.SnapshotId;
        }
        if (status === 'deleted' || status === 'deleting' || status === 'error') {
          // The next deploy uploads again (a new object, so a new import token) once the cause is fixed.
          await this.removeUpload(key);
          throw new AwsImportFailedError(this.name, id, status === 'deleting' ? 'deleted' : status, message);
        }
        const now = `${status} ${detail.Progress ?? ''} ${message}`;
        if (now !== seen) {
          seen = now;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > this.settings.stallTimeoutMs) {
          throw new AwsImportFailedError(
            this.name,
            id,
            `stalled (no progress for ${Math.round(this.settings.stallTimeoutMs / 60_000)} min)`,
            `${status} ${detail.Progress ?? '?'}%: ${message}`,
            'the task is left running: the next deploy resumes polling it; cancel it with CancelImportTask to start over',
          );
        }
        report(`import ${id}: ${status}${detail.Progress ? ` ${detail.Progress}%` : ''}${message ? ` (${message})` : ''}`, Number(detail.Progress ?? 0), 100);
      }
      await sleep(this.settings.pollIntervalMs, ctx.signal);
      if (ctx.signal?.aborted) throw new CancelledError(`polling import task ${id}`);
      const again = await this.call('DescribeImportSnapshotTasks', (abortSignal) => this.clients.ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [id] }), { abortSignal }), ctx);
      detail = again.ImportSnapshotTasks?.find((t) => t.ImportTaskId === id)?.SnapshotTaskDetail;
      if (!detail) throw new AwsImportFailedError(this.name, id, 'unknown', 'DescribeImportSnapshotTasks no longer lists the task');
    }
  }

  private async register(image: ImageSource, sha256: string, snapshotId: string, ctx: DriverContext): Promise<string> {
    const name = amiName(image.name, sha256);
    const tags = this.artifactTags(image, sha256);
    let imageId: string | undefined;
    try {
      const res = await this.clients.ec2.send(
        new RegisterImageCommand({
          Name: name,
          Description: `KubeDos image ${image.name}, artifact sha256:${sha256}`.slice(0, 255),
          Architecture: AMI_IMPORT.architecture,
          BootMode: AMI_IMPORT.bootMode,
          EnaSupport: AMI_IMPORT.enaSupport,
          VirtualizationType: AMI_IMPORT.virtualizationType,
          RootDeviceName: AMI_IMPORT.rootDeviceName,
          // Instances of this AMI answer IMDSv2 only (tokens required), whatever launches them.
          ImdsSupport: 'v2.0',
          BlockDeviceMappings: [{ DeviceName: AMI_IMPORT.rootDeviceName, Ebs: { SnapshotId: snapshotId, DeleteOnTermination: true, VolumeType: 'gp3' } }],
          TagSpecifications: [{ ResourceType: 'image', Tags: tagList(tags) }],
        }),
        { abortSignal: ctx.signal },
      );
      imageId = res.ImageId;
    } catch (err) {
      if (awsErrorCode(err) !== 'InvalidAMIName.Duplicate') throw awsError(this.name, 'RegisterImage', err, this.clients.credentialSource);
      // Registered meanwhile (another worker), or before a crash lost its tags: ours when it boots from this snapshot.
      const named = await this.describeImages({ filters: [{ Name: 'name', Values: [name] }] }, ctx);
      const mine = named.find((i) => i.BlockDeviceMappings?.some((m) => m.Ebs?.SnapshotId === snapshotId));
      if (!mine?.ImageId) throw awsError(this.name, 'RegisterImage', err, this.clients.credentialSource);
      imageId = mine.ImageId;
    }
    if (!imageId) throw new AwsImportFailedError(this.name, snapshotId, 'not registered', 'RegisterImage returned no image id');
    // Tags again, idempotently: some implementations ignore TagSpecifications of RegisterImage.
    await this.call('CreateTags', (abortSignal) => this.clients.ec2.send(new CreateTagsCommand({ Resources: [imageId!], Tags: tagList(tags) }), { abortSignal }), ctx);
    logger.info({ target: this.name, imageId, snapshotId, name }, 'AMI registered');
    const found = await this.findImage(sha256, ctx);
    return found ?? imageId;
  }

  /** Delete the uploaded object, best effort (prune removes what is left). */
  private async removeUpload(key: string): Promise<void> {
    try {
      await this.clients.s3.send(new DeleteObjectCommand({ Bucket: this.spec.importBucket, Key: key }));
    } catch (err) {
      logger.warn({ target: this.name, key, err: String(err) }, 'could not delete the uploaded artifact');
    }
  }
}
