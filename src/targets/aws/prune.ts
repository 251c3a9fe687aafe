/**
 * `kubedos down --prune-images` on an aws target: what KubeDos made for it that costs money
 * while nothing uses it. Only resources carrying this target's ownership tags are considered:
 *
 * - AMIs that no live instance (of any fleet, or of anyone) was launched from are deregistered,
 *   then their snapshots (those tagged as KubeDos's) deleted;
 * - snapshots KubeDos imported that no AMI of this target uses (a prepare that died before
 *   RegisterImage) are deleted;
 * - the managed security group is deleted when no network interface uses it.
 *
 * Anything in use is kept and reported as such.
 */
import {
  DeleteSecurityGroupCommand,
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
} from '@aws-sdk/client-ec2';
import { logger } from '../../log';
import type { DriverContext, PrunedImages } from '../driver';
import { awsError, awsErrorCode, call, ownedFilters, type AwsClients } from './api';
import type { AwsTargetSpec } from './index';

const LIVE = ['pending', 'running', 'stopping', 'stopped', 'shutting-down'];

export async function pruneImages(name: string, spec: AwsTargetSpec, clients: AwsClients, ctx: DriverContext): Promise<PrunedImages> {
  const run = <T>(operation: string, fn: (abortSignal?: AbortSignal) => Promise<T>) => call(name, clients, operation, fn, ctx.signal);
  const removed: string[] = [];
  const kept: string[] = [];

  const images = (await run('DescribeImages', (abortSignal) => clients.ec2.send(new DescribeImagesCommand({ Owners: ['self'], Filters: ownedFilters(name) }), { abortSignal }))).Images ?? [];
  const snapshots = (await run('DescribeSnapshots', (abortSignal) => clients.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: ownedFilters(name) }), { abortSignal }))).Snapshots ?? [];
  const ours = new Set(snapshots.map((s) => s.SnapshotId!));
  const stillUsed = new Set<string>();

  for (const image of images) {
    const id = image.ImageId!;
    const users = await run('DescribeInstances', (abortSignal) =>
      clients.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'image-id', Values: [id] }, { Name: 'instance-state-name', Values: LIVE }] }), { abortSignal }),
    );
    const count = (users.Reservations ?? []).reduce((n, r) => n + (r.Instances?.length ?? 0), 0);
    const snaps = (image.BlockDeviceMappings ?? []).map((m) => m.Ebs?.SnapshotId).filter((s): s is string => Boolean(s));
    if (count > 0) {
      kept.push(`AMI ${id} (${image.Name}): ${count} instance(s) run it`);
      for (const s of snaps) stillUsed.add(s);
      continue;
    }
    await run('DeregisterImage', (abortSignal) => clients.ec2.send(new DeregisterImageCommand({ ImageId: id }), { abortSignal }));
    removed.push(`AMI ${id} (${image.Name})`);
    logger.info({ target: name, imageId: id }, 'AMI deregistered');
  }

  for (const snapshot of snapshots) {
    const id = snapshot.SnapshotId!;
    if (stillUsed.has(id) || !ours.has(id)) continue;
    await run('DeleteSnapshot', (abortSignal) => clients.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }), { abortSignal }));
    removed.push(`snapshot ${id}`);
  }

  if (spec.managedSecurityGroup) {
    const groups = (await run('DescribeSecurityGroups', (abortSignal) => clients.ec2.send(new DescribeSecurityGroupsCommand({ Filters: ownedFilters(name) }), { abortSignal }))).SecurityGroups ?? [];
    for (const g of groups) {
      try {
        await clients.ec2.send(new DeleteSecurityGroupCommand({ GroupId: g.GroupId! }), { abortSignal: ctx.signal });
        removed.push(`security group ${g.GroupId} (${g.GroupName})`);
      } catch (err) {
        if (awsErrorCode(err) !== 'DependencyViolation') throw awsError(name, 'DeleteSecurityGroup', err, clients.credentialSource);
        kept.push(`security group ${g.GroupId} (${g.GroupName}): still in use`);
      }
    }
  }
  return { removed, kept };
}
