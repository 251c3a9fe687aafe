/**
 * The AWS side of the `aws` target: SDK clients with credentials from the standard chain (or the
 * spec's profile, optionally assuming its role), every call through `call()` so an SDK failure
 * becomes one typed error (src/errors.ts, `// --- aws ---`): throttling, capacity, quotas and
 * AWS's own failures are retryable; invalid parameters and refused credentials are not, and say
 * which field, variable or profile to fix. Endpoints follow the SDK's standard
 * AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_STS variables
 * (that is how the tests point the driver at moto), so no endpoint is ever part of the spec.
 * The tags KubeDos puts on everything are made and read here too.
 */
import { EC2Client, type Filter, type Tag } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { fromIni, fromNodeProviderChain, fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import { AwsApiError, AwsCredentialsError, AwsInvalidRequestError, AwsUnauthorizedError, AwsUnavailableError, CancelledError, KubedosError } from '../../errors';
import type { NodeLabels } from '../driver';
import type { PublicIdentity } from '../identity';
import { nodeRecordOf, nodeRecordTags } from '../driver-support';
import type { AwsTargetSpec } from './index';

/** The prefix of every tag KubeDos writes (user tags may not use it). */
export const TAG_PREFIX = 'kubedos:';
export const TAG = {
  managed: 'kubedos:managed',
  target: 'kubedos:target',
  platform: 'kubedos:platform',
  fleet: 'kubedos:fleet',
  generation: 'kubedos:generation',
  image: 'kubedos:image',
  imageDigest: 'kubedos:image-digest',
  nodeId: 'kubedos:node-id',
  hostname: 'kubedos:hostname',
  machineId: 'kubedos:machine-id',
  hostKey: 'kubedos:host-key',
  hostKeyFingerprint: 'kubedos:host-key-fingerprint',
  artifactSha256: 'kubedos:artifact-sha256',
} as const;

export interface AwsClients {
  ec2: EC2Client;
  s3: S3Client;
  /** Where the credentials come from, in the words an error message uses. */
  credentialSource: string;
}

/** How an error message names the credentials in use (the variable, profile or role to fix). */
export function credentialSource(spec: Pick<AwsTargetSpec, 'profile' | 'roleArn'>, env: NodeJS.ProcessEnv = process.env): string {
  const role = spec.roleArn ? `, assuming role ${spec.roleArn}` : '';
  if (spec.profile) return `profile ${spec.profile} (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE, default ~/.aws)${role}`;
  if (env.AWS_ACCESS_KEY_ID) return `AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY${env.AWS_SESSION_TOKEN ? ' / AWS_SESSION_TOKEN' : ''}${role}`;
  if (env.AWS_PROFILE) return `AWS_PROFILE=${env.AWS_PROFILE}${role}`;
  if (env.AWS_WEB_IDENTITY_TOKEN_FILE) return `AWS_WEB_IDENTITY_TOKEN_FILE / AWS_ROLE_ARN${role}`;
  return `the SDK's standard chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws, SSO, the instance role: none found)${role}`;
}

/** SDK clients for one target. Credentials are resolved lazily, on the first call. */
export function awsClients(targetName: string, spec: AwsTargetSpec, options: { maxAttempts?: number } = {}): AwsClients {
  const base = spec.profile ? fromIni({ profile: spec.profile }) : fromNodeProviderChain();
  const credentials = spec.roleArn
    ? fromTemporaryCredentials({
        masterCredentials: base,
        params: { RoleArn: spec.roleArn, RoleSessionName: `kubedos-${targetName}`.slice(0, 64), DurationSeconds: 3600 },
        clientConfig: { region: spec.region },
      })
    : base;
  // The SDK retries throttling and 5xx itself (standard mode, jittered backoff); what is left
  // after that is retried by the activity, from the error's class.
  const maxAttempts = options.maxAttempts ?? 4;
  return {
    ec2: new EC2Client({ region: spec.region, credentials, maxAttempts }),
    s3: new S3Client({
      region: spec.region,
      credentials,
      maxAttempts,
      // Parts carry their own SHA256 (s3-multipart.ts): no extra CRC work.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
    credentialSource: credentialSource(spec),
  };
}

interface AwsLikeError {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: 'client' | 'server';
}

/** The AWS error code of an SDK failure (`InvalidParameterValue`, `RequestLimitExceeded`, …). */
export function awsErrorCode(err: unknown): string {
  const e = err as AwsLikeError;
  return e?.Code ?? e?.name ?? e?.code ?? 'Error';
}

const THROTTLED = /^(RequestLimitExceeded|Throttling|ThrottlingException|ThrottledException|RequestThrottled|RequestThrottledException|TooManyRequestsException|SlowDown|PriorRequestNotComplete|BandwidthLimitExceeded|EC2ThrottledException)$/;
const CAPACITY = /^(Insufficient\w*Capacity|InsufficientFreeAddressesInSubnet|InstanceLimitExceeded|VcpuLimitExceeded|ResourceLimitExceeded|SnapshotCreationPerVolumeRateExceeded|ResourceCountExceeded|MaxIOPSLimitExceeded|VolumeLimitExceeded|AddressLimitExceeded)$/;
const FAILING = /^(InternalError|InternalFailure|InternalServerError|ServiceUnavailable|Unavailable|ServerInternal|RequestTimeout|RequestTimeoutException|TimeoutError|RequestExpired|IncorrectState|IncorrectInstanceState|ConcurrentTagAccess)$/;
const CREDENTIALS = /^(AuthFailure|InvalidClientTokenId|SignatureDoesNotMatch|UnrecognizedClientException|ExpiredToken|ExpiredTokenException|InvalidAccessKeyId|IncompleteSignature|MissingAuthenticationToken|CredentialsProviderError|InvalidToken|InvalidSecurity|TokenRefreshRequired)$/;
const UNAUTHORIZED = /^(UnauthorizedOperation|AccessDenied|AccessDeniedException|Blocked|OptInRequired|AllAccessDisabled|PendingVerification)$/;
const INVALID = /^(Invalid|Missing|Unknown|Unsupported|ValidationError|IdempotentParameterMismatch|NoSuchBucket|DependencyViolation|OperationNotPermitted|MalformedPolicy|InvalidBucketName)/;
const NETWORK = /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|ECONNRESET|EPIPE|EAI_AGAIN|socket hang up/i;

/** Which field of the spec an invalid-request code is about, when the code says. */
function fieldHint(code: string, operation: string): string {
  if (/^InvalidSubnetID/.test(code)) return 'fix subnet in the target spec (it must exist in the target\'s region)';
  if (/^InvalidGroup/.test(code)) return 'fix securityGroups in the target spec (they must exist in the subnet\'s VPC)';
  if (/^InvalidInstanceType|^Unsupported$/.test(code) || (code === 'InvalidParameterValue' && operation === 'RunInstances')) {
    return 'check instanceType (a Nitro type offered in the subnet\'s availability zone) and subnet';
  }
  if (code === 'NoSuchBucket' || code === 'InvalidBucketName') return 'fix importBucket in the target spec (an existing bucket in the target\'s region)';
  if (/^InvalidAMIID|^InvalidSnapshot/.test(code)) return 'the prepared image is gone: the next deploy imports it again (kubedos down --prune-images removes only unused ones)';
  if (/Role|vmimport/i.test(code) || operation === 'ImportSnapshot') return 'check importRole (the VM Import service role, see the README) and importBucket';
  return 'fix the target spec field the message names';
}

/** The typed error of a failed AWS call. */
export function awsError(target: string, operation: string, err: unknown, credentials: string): KubedosError {
  if (err instanceof KubedosError) return err;
  const e = err as AwsLikeError;
  const code = awsErrorCode(err);
  const detail = (e?.message ?? String(err)).replace(/\s+/g, ' ').trim();
  const status = e?.$metadata?.httpStatusCode ?? 0;
  const options = { cause: err };
  if (/sts:AssumeRole/.test(detail) || (operation === 'AssumeRole' && code !== 'Error')) {
    return new AwsCredentialsError(target, credentials, code, detail, options);
  }
  if (CREDENTIALS.test(code) || (code === 'Error' && /credential/i.test(detail))) return new AwsCredentialsError(target, credentials, code, detail, options);
  if (UNAUTHORIZED.test(code)) {
    return new AwsUnauthorizedError(target, operation, code, detail, `allow ${operation} to the identity behind ${credentials} (an IAM policy; the README lists what the aws target calls)`, options);
  }
  if (THROTTLED.test(code)) return new AwsUnavailableError(target, operation, code, detail, 'AWS throttled the request; the step is retried with backoff (many fleets on one account share its API rate)', options);
  if (CAPACITY.test(code)) {
    return new AwsUnavailableError(target, operation, code, detail, 'out of capacity or quota for now: the step is retried; if it persists, choose another instanceType or subnet (zone) or ask AWS for a higher quota', options);
  }
  if (FAILING.test(code) || status >= 500 || status === 429 || e?.$fault === 'server') {
    return new AwsUnavailableError(target, operation, code, detail, 'AWS failed the request; the step is retried', options);
  }
  if (NETWORK.test(`${e?.code ?? ''} ${detail}`)) {
    return new AwsUnavailableError(target, operation, code, detail, 'the AWS endpoint is unreachable from the cloud worker (network, proxy, or AWS_ENDPOINT_URL*); the step is retried', options);
  }
  if (INVALID.test(code)) return new AwsInvalidRequestError(target, operation, code, detail, fieldHint(code, operation), options);
  return new AwsApiError(target, operation, code, detail, options);
}

/** Run one AWS call: cancellation stays CancelledError, any other failure becomes awsError. */
export async function call<T>(target: string, clients: Pick<AwsClients, 'credentialSource'>, operation: string, run: (abortSignal?: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal?.aborted) throw new CancelledError(operation);
  try {
    return await run(signal);
  } catch (err) {
    if (signal?.aborted) throw new CancelledError(operation);
    throw awsError(target, operation, err, clients.credentialSource);
  }
}

/** Tags as the API takes them. */
export function tagList(tags: Record<string, string>): Tag[] {
  return Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
}

/** Tags as a record. */
export function tagRecord(tags: readonly Tag[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

/** Filters matching what one target owns (plus any extra `tag:` filters). */
export function ownedFilters(targetName: string, extra: Record<string, string | undefined> = {}): Filter[] {
  const filters: Filter[] = [
    { Name: `tag:${TAG.managed}`, Values: ['true'] },
    { Name: `tag:${TAG.target}`, Values: [targetName] },
  ];
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) filters.push({ Name: `tag:${key}`, Values: [value] });
  return filters;
}

/** Tags of everything a target makes: the user's, then ownership (which wins). */
export function baseTags(targetName: string, spec: AwsTargetSpec): Record<string, string> {
  return { ...spec.tags, [TAG.managed]: 'true', [TAG.target]: targetName };
}

/** Tags of a node's instance and volume: its labels and its public identity (the pin). */
export function nodeTags(targetName: string, spec: AwsTargetSpec, nodeId: string, labels: NodeLabels, identity: PublicIdentity): Record<string, string> {
  return {
    ...(spec.tags.Name === undefined ? { Name: nodeId } : {}),
    ...baseTags(targetName, spec),
    ...nodeRecordTags(TAG, nodeId, labels, identity),
  };
}

/** Labels and identity of an instance from its tags; undefined when they are not a KubeDos node's. */
export function nodeFromTags(tags: Record<string, string>, targetName: string): { nodeId: string; labels: NodeLabels; identity: PublicIdentity } | undefined {
  if (tags[TAG.managed] !== 'true' || tags[TAG.target] !== targetName) return undefined;
  return nodeRecordOf(TAG, (k) => tags[k]);
}
