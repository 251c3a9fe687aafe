/**
 * The AWS EC2 target: nodes are instances launched from an AMI that `prepare` imports from the
 * image's `ami` artifact (./import.ts), driven with the AWS SDK for JavaScript (./api.ts).
 *
 * - create: ONE `RunInstances` per node, which also starts it (EC2 has no "created, not running"
 *   state worth paying for; `start` then only starts a stopped instance). Tags on the instance and
 *   its volume at launch: ownership (`kubedos:managed`, `kubedos:target`), the node id, platform,
 *   fleet, generation, image and digest, and the node's public identity (hostname, machine-id,
 *   host key and fingerprint: the pin). User-data is the node's NoCloud `#cloud-config` (the same
 *   text a cidata seed carries, src/targets/nocloud.ts), read at first boot by the image's EC2
 *   reader (src/foundry/ec2-reader.ts) over IMDSv2 — or by a stock cloud-init. Metadata options:
 *   tokens required (IMDSv2 only), one hop (containers on the node cannot reach it).
 * - idempotency: a create first looks for a live instance tagged with the node id (a retried
 *   activity gets back the identity that instance really has). The ClientToken is derived from
 *   the node id and the attempt's machine-id, so the SDK's own retries of one call (a lost
 *   response) never launch a second instance, while a node replaced after a failure (same id,
 *   new identity) gets a token of its own (EC2 keeps tokens of terminated instances for a day).
 * - readiness: `GetConsoleOutput` (latest) holds the image's `kubedos: ready <hostname>` line;
 *   an instance that stopped or terminated before it is NodeNotRunningError with the console tail.
 * - address: the private IPv4, or the public one (`address: public`, requested at launch).
 * - destroy: `TerminateInstances` of the node's instances (the root volume goes with them);
 *   ownership is checked on the instance's own tags, so nothing else is ever terminated.
 * - list: `DescribeInstances` by tag, live instances only.
 * - security groups: the spec's, or one KubeDos creates in the subnet's VPC and owns
 *   (`managedSecurityGroup`), whose ingress is kept to exactly the given ports and CIDRs.
 * - pruneImages (`kubedos down --prune-images`, ./prune.ts): AMIs, snapshots and the managed
 *   group of this target that no instance uses any more.
 */
import { createHash } from 'node:crypto';
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  GetConsoleOutputCommand,
  RevokeSecurityGroupIngressCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  TerminateInstancesCommand,
  type Filter,
  type Instance,
  type IpPermission,
  type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import { AwsInvalidRequestError, NodeAddressUnknownError, NodeImageConflictError, NodeNotRunningError, TargetNodeNotFoundError } from '../../errors';
import { logger } from '../../log';
import type { CreateNodeRequest, DriverContext, DriverEnvironment, ImageSource, NodeAddress, OwnedNode, PreparedImage, PrunedImages, TargetDriver } from '../driver';
import { consoleReady, publicPart, type PublicIdentity } from '../identity';
import { renderNocloud } from '../nocloud';
import { awsClients, awsError, awsErrorCode, baseTags, call, nodeFromTags, nodeTags, ownedFilters, TAG, tagList, tagRecord, type AwsClients } from './api';
import { AmiImporter, DEFAULT_IMPORT_SETTINGS, type ImportSettings } from './import';
import type { AwsTargetSpec } from './index';
import { pruneImages } from './prune';

/** Instance states in which a node exists (terminated ones linger in DescribeInstances for an hour). */
export const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'] as const;

export interface AwsDriverOptions {
  /** SDK clients. @default awsClients(name, spec): the standard chain, AWS_ENDPOINT_URL* honoured */
  clients?: AwsClients;
  /** Import polling and upload settings. @default DEFAULT_IMPORT_SETTINGS */
  import?: Partial<ImportSettings>;
}

/** Node ids become tag values and the instance's Name: keep them to a DNS-like alphabet. */
function checkNodeId(nodeId: string): void {
  if (!/^[a-z0-9]([a-z0-9.-]{0,126}[a-z0-9])?$/.test(nodeId)) throw new TypeError(`invalid node id ${JSON.stringify(nodeId)}`);
}

/**
 * The RunInstances idempotency token of one create attempt: the node id and the attempt's
 * machine-id (64 ASCII characters, EC2's limit).
 */
export function runToken(nodeId: string, machineId: string): string {
  return `kd-${createHash('sha256').update(nodeId).digest('hex').slice(0, 28)}-${machineId.slice(0, 32)}`;
}

/** The user-data of a node: its NoCloud #cloud-config, base64 as RunInstances takes it. */
export function userDataOf(request: Pick<CreateNodeRequest, 'nodeId' | 'identity' | 'authorizedKeys'>): string {
  const { 'user-data': userData } = renderNocloud({ instanceId: request.nodeId, identity: request.identity, authorizedKeys: request.authorizedKeys });
  const bytes = Buffer.from(userData, 'utf8');
  // EC2's limit is 16 KiB before base64.
  if (bytes.length > 16 * 1024) throw new TypeError(`user-data of ${request.nodeId} is ${bytes.length} bytes, over EC2's 16 KiB`);
  return bytes.toString('base64');
}

/** Ingress rules of the managed group: each port to each CIDR, TCP. */
export function wantedIngress(ports: readonly number[], cidrs: readonly string[]): IpPermission[] {
  return ports.map((port) => ({ IpProtocol: 'tcp', FromPort: port, ToPort: port, IpRanges: cidrs.map((CidrIp) => ({ CidrIp, Description: 'KubeDos health checks' })) }));
}

/** `tcp/<port>/<cidr>` of every rule, for comparing what a group has with what it should have. */
export function ruleKeys(permissions: readonly IpPermission[]): string[] {
  return permissions.flatMap((p) => {
    const proto = p.IpProtocol ?? '?';
    const range = p.FromPort === p.ToPort ? `${p.FromPort}` : `${p.FromPort}-${p.ToPort}`;
    const v4 = (p.IpRanges ?? []).map((r) => `${proto}/${range}/${r.CidrIp}`);
    const other = [...(p.Ipv6Ranges ?? []).map((r) => `${proto}/${range}/${r.CidrIpv6}`), ...(p.UserIdGroupPairs ?? []).map((g) => `${proto}/${range}/${g.GroupId}`), ...(p.PrefixListIds ?? []).map((l) => `${proto}/${range}/${l.PrefixListId}`)];
    return [...v4, ...other];
  });
}

export class AwsDriver implements TargetDriver {
  readonly type = 'aws' as const;
  readonly clients: AwsClients;
  private readonly importer: AmiImporter;
  private groups?: Promise<string[]>;

  constructor(
    readonly name: string,
    readonly spec: AwsTargetSpec,
    _env: DriverEnvironment,
    options: AwsDriverOptions = {},
  ) {
    this.clients = options.clients ?? awsClients(name, spec);
    this.importer = new AmiImporter(name, spec, this.clients, { ...DEFAULT_IMPORT_SETTINGS, ...options.import });
  }

  private call<T>(operation: string, run: (abortSignal?: AbortSignal) => Promise<T>, ctx: DriverContext): Promise<T> {
    return call(this.name, this.clients, operation, run, ctx.signal);
  }

  /** Instances matching filters (all pages). */
  private async instances(filters: Filter[], ctx: DriverContext): Promise<Instance[]> {
    const out: Instance[] = [];
    let token: string | undefined;
    do {
      const res = await this.call('DescribeInstances', (abortSignal) => this.clients.ec2.send(new DescribeInstancesCommand({ Filters: filters, NextToken: token }), { abortSignal }), ctx);
      for (const r of res.Reservations ?? []) out.push(...(r.Instances ?? []));
      token = res.NextToken;
    } while (token);
    return out;
  }

  /** The node's instances, ownership checked on their own tags, in the given states. */
  private async nodeInstances(nodeId: string, ctx: DriverContext, states: readonly string[] = LIVE_STATES): Promise<Array<{ instance: Instance; node: NonNullable<ReturnType<typeof nodeFromTags>> }>> {
    checkNodeId(nodeId);
    const found = await this.instances([...ownedFilters(this.name, { [TAG.nodeId]: nodeId }), { Name: 'instance-state-name', Values: [...states] }], ctx);
    return found
      .map((instance) => ({ instance, node: nodeFromTags(tagRecord(instance.Tags), this.name) }))
      .filter((x): x is { instance: Instance; node: NonNullable<typeof x.node> } => x.node?.nodeId === nodeId)
      .sort((a, b) => (a.instance.LaunchTime?.getTime() ?? 0) - (b.instance.LaunchTime?.getTime() ?? 0));
  }

  async prepare(image: ImageSource, ctx: DriverContext): Promise<PreparedImage> {
    return this.importer.prepare(image, ctx);
  }

  async create(request: CreateNodeRequest, ctx: DriverContext): Promise<PublicIdentity> {
    const { nodeId, labels, identity } = request;
    checkNodeId(nodeId);
    if (!/^ami-[0-9a-f]{8,17}$/.test(request.image.location)) throw new TypeError(`image location ${JSON.stringify(request.image.location)} is not an AMI id prepared by ${this.name}`);
    const [existing] = await this.nodeInstances(nodeId, ctx);
    if (existing) {
      // A retried activity: keep the instance, and return the identity it really has.
      if (existing.node.labels.imageDigest !== labels.imageDigest) throw new NodeImageConflictError(`${this.name} (${existing.instance.InstanceId})`, nodeId, existing.node.labels.imageDigest);
      return existing.node.identity;
    }
    const tags = tagList(nodeTags(this.name, this.spec, nodeId, labels, publicPart(identity)));
    const groups = await this.securityGroupIds(ctx);
    const input: RunInstancesCommandInput = {
      ImageId: request.image.location,
      InstanceType: this.spec.instanceType as RunInstancesCommandInput['InstanceType'],
      MinCount: 1,
      MaxCount: 1,
      ClientToken: runToken(nodeId, identity.machineId),
      UserData: userDataOf(request),
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1, InstanceMetadataTags: 'disabled' },
      TagSpecifications: [
        { ResourceType: 'instance', Tags: tags },
        { ResourceType: 'volume', Tags: tags },
      ],
      ...(this.spec.address === 'public'
        ? { NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: this.spec.subnet, Groups: groups, AssociatePublicIpAddress: true, DeleteOnTermination: true }] }
        : { SubnetId: this.spec.subnet, SecurityGroupIds: groups }),
    };
    const res = await this.call('RunInstances', (abortSignal) => this.clients.ec2.send(new RunInstancesCommand(input), { abortSignal }), ctx);
    logger.info({ target: this.name, nodeId, instanceId: res.Instances?.[0]?.InstanceId }, 'ec2 instance launched');
    return publicPart(identity);
  }

  async start(nodeId: string, ctx: DriverContext): Promise<void> {
    const [found] = await this.nodeInstances(nodeId, ctx);
    if (!found) throw new TargetNodeNotFoundError(this.name, nodeId, 'start');
    const state = found.instance.State?.Name;
    if (state === 'pending' || state === 'running') return; // RunInstances started it
    await this.call('StartInstances', (abortSignal) => this.clients.ec2.send(new StartInstancesCommand({ InstanceIds: [found.instance.InstanceId!] }), { abortSignal }), ctx);
  }

  async address(nodeId: string, ctx: DriverContext): Promise<NodeAddress> {
    const [found] = await this.nodeInstances(nodeId, ctx);
    if (!found) throw new TargetNodeNotFoundError(this.name, nodeId, 'locate');
    const ip = this.spec.address === 'public' ? found.instance.PublicIpAddress : found.instance.PrivateIpAddress;
    if (!ip) {
      throw new NodeAddressUnknownError(
        this.name,
        nodeId,
        `instance ${found.instance.InstanceId} (${found.instance.State?.Name}) has no ${this.spec.address} IPv4 address yet`,
        this.spec.address === 'public' ? 'a public address comes with the running instance; if it never does, the subnet or account refuses public IPv4s: use address: private from a worker in the VPC' : undefined,
      );
    }
    return { host: ip, ports: { 22: 22 } };
  }

  async readiness(nodeId: string, ctx: DriverContext): Promise<boolean> {
    const all = await this.nodeInstances(nodeId, ctx, [...LIVE_STATES, 'shutting-down', 'terminated']);
    const found = all.at(-1);
    if (!found) throw new TargetNodeNotFoundError(this.name, nodeId, 'check');
    const state = found.instance.State?.Name;
    const consoleLog = await this.consoleOutput(found.instance.InstanceId!, ctx);
    if (state !== 'pending' && state !== 'running') {
      // Stopped or terminated (by hand, a spot reclaim, a failed health check elsewhere): never ready again.
      throw new NodeNotRunningError(nodeId, `${this.name} (${found.instance.InstanceId} ${state}${found.instance.StateReason?.Message ? `: ${found.instance.StateReason.Message}` : ''})`, consoleLog.trimEnd().split('\n').slice(-15).join('\n'));
    }
    return consoleReady(consoleLog, found.node.identity.hostname);
  }

  /** The instance's serial console so far (empty until EC2 has some). */
  async consoleOutput(instanceId: string, ctx: DriverContext = {}): Promise<string> {
    const res = await this.call('GetConsoleOutput', (abortSignal) => this.clients.ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true }), { abortSignal }), ctx);
    return res.Output ? Buffer.from(res.Output, 'base64').toString('utf8') : '';
  }

  async destroy(nodeId: string, ctx: DriverContext): Promise<void> {
    const found = await this.nodeInstances(nodeId, ctx, [...LIVE_STATES, 'shutting-down']);
    const ids = found.filter((f) => f.instance.State?.Name !== 'shutting-down').map((f) => f.instance.InstanceId!);
    if (!ids.length) return;
    await this.call('TerminateInstances', (abortSignal) => this.clients.ec2.send(new TerminateInstancesCommand({ InstanceIds: ids }), { abortSignal }), ctx);
    logger.info({ target: this.name, nodeId, instanceIds: ids }, 'ec2 instances terminated');
  }

  async list(filter: { platform?: string; fleet?: string }, ctx: DriverContext): Promise<OwnedNode[]> {
    const found = await this.instances([...ownedFilters(this.name, { [TAG.platform]: filter.platform, [TAG.fleet]: filter.fleet }), { Name: 'instance-state-name', Values: [...LIVE_STATES] }], ctx);
    return found
      .flatMap((instance) => {
        const node = nodeFromTags(tagRecord(instance.Tags), this.name);
        if (!node) return [];
        if ((filter.platform && node.labels.platform !== filter.platform) || (filter.fleet && node.labels.fleet !== filter.fleet)) return [];
        const state = instance.State?.Name;
        return [{ nodeId: node.nodeId, labels: node.labels, identity: node.identity, running: state === 'running' || state === 'pending' }];
      })
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** The instance ids of a node (diagnostics and tests). */
  async instanceIdsOf(nodeId: string, ctx: DriverContext = {}): Promise<string[]> {
    return (await this.nodeInstances(nodeId, ctx)).map((f) => f.instance.InstanceId!);
  }

  async pruneImages(ctx: DriverContext): Promise<PrunedImages> {
    return pruneImages(this.name, this.spec, this.clients, ctx);
  }

  /** The spec's groups, or the managed one (made, and its ingress set, once per driver). */
  private securityGroupIds(ctx: DriverContext): Promise<string[]> {
    if (this.spec.securityGroups) return Promise.resolve([...this.spec.securityGroups]);
    this.groups ??= this.ensureManagedGroup(ctx).then(
      (id) => [id],
      (err: unknown) => {
        this.groups = undefined;
        throw err;
      },
    );
    return this.groups;
  }

  /** The group KubeDos owns for this target in the subnet's VPC, with exactly the wanted ingress. */
  async ensureManagedGroup(ctx: DriverContext): Promise<string> {
    const managed = this.spec.managedSecurityGroup!;
    const subnets = await this.call('DescribeSubnets', (abortSignal) => this.clients.ec2.send(new DescribeSubnetsCommand({ SubnetIds: [this.spec.subnet] }), { abortSignal }), ctx);
    const vpcId = subnets.Subnets?.[0]?.VpcId;
    if (!vpcId) throw new AwsInvalidRequestError(this.name, 'DescribeSubnets', 'InvalidSubnetID.NotFound', `subnet ${this.spec.subnet} not found`, 'fix subnet in the target spec');
    const groupName = `kubedos-${this.name}`;
    const describe = async (filters: Filter[]) =>
      (await this.call('DescribeSecurityGroups', (abortSignal) => this.clients.ec2.send(new DescribeSecurityGroupsCommand({ Filters: [...filters, { Name: 'vpc-id', Values: [vpcId] }] }), { abortSignal }), ctx)).SecurityGroups ?? [];
    let group = (await describe(ownedFilters(this.name)))[0];
    if (!group) {
      try {
        const created = await this.clients.ec2.send(
          new CreateSecurityGroupCommand({
            GroupName: groupName,
            Description: `KubeDos target ${this.name}: health-check ports only`,
            VpcId: vpcId,
            TagSpecifications: [{ ResourceType: 'security-group', Tags: tagList({ Name: groupName, ...baseTags(this.name, this.spec) }) }],
          }),
          { abortSignal: ctx.signal },
        );
        group = { GroupId: created.GroupId, IpPermissions: [] };
        logger.info({ target: this.name, groupId: created.GroupId, vpcId }, 'managed security group created');
      } catch (err) {
        if (awsErrorCode(err) !== 'InvalidGroup.Duplicate') throw awsError(this.name, 'CreateSecurityGroup', err, this.clients.credentialSource);
        // Made meanwhile by another worker: ours when tagged so; a group of that name made by hand is not touched.
        group = (await describe([{ Name: 'group-name', Values: [groupName] }, ...ownedFilters(this.name)]))[0];
        if (!group) throw new AwsInvalidRequestError(this.name, 'CreateSecurityGroup', 'InvalidGroup.Duplicate', `a security group named ${groupName} exists in ${vpcId} and is not KubeDos's`, 'remove or rename it, or list existing groups in securityGroups');
      }
    }
    const groupId = group.GroupId!;
    const have = new Set(ruleKeys(group.IpPermissions ?? []));
    const want = wantedIngress(managed.ports, managed.allowFrom);
    const wanted = new Set(ruleKeys(want));
    const missing = want.map((p) => ({ ...p, IpRanges: p.IpRanges!.filter((r) => !have.has(`tcp/${p.FromPort}/${r.CidrIp}`)) })).filter((p) => p.IpRanges.length);
    if (missing.length) {
      try {
        await this.clients.ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: missing }), { abortSignal: ctx.signal });
      } catch (err) {
        // Added meanwhile by another worker.
        if (awsErrorCode(err) !== 'InvalidPermission.Duplicate') throw awsError(this.name, 'AuthorizeSecurityGroupIngress', err, this.clients.credentialSource);
      }
    }
    // Anything else on KubeDos's own group goes: it opens only what the spec says.
    const extra = (group.IpPermissions ?? [])
      .map((p) => ({ ...p, IpRanges: (p.IpRanges ?? []).filter((r) => !wanted.has(ruleKeys([{ ...p, IpRanges: [r], Ipv6Ranges: [], UserIdGroupPairs: [], PrefixListIds: [] }])[0]!)) }))
      .filter((p) => p.IpRanges.length || p.Ipv6Ranges?.length || p.UserIdGroupPairs?.length || p.PrefixListIds?.length);
    if (extra.length) {
      await this.call('RevokeSecurityGroupIngress', (abortSignal) => this.clients.ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: extra }), { abortSignal }), ctx);
    }
    return groupId;
  }

  async close(): Promise<void> {
    this.clients.ec2.destroy();
    this.clients.s3.destroy();
  }
}
