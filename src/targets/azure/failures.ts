/**
 * Azure's answers as KubeDos errors. Resource Manager, Storage and Entra ID errors carry a code
 * (`AuthorizationFailed`, `QuotaExceeded`, …) and an HTTP status; a failed long-running operation
 * surfaces as core-lro's "The long-running operation has failed. <code>. <message>". The class
 * (src/errors.ts) says whether the step is retried; the hint says what to fix, naming the spec
 * field when the error points at one.
 */
import {
  AzureInvalidRequestError,
  AzurePermissionError,
  AzureProvisioningError,
  AzureQuotaError,
  AzureThrottledError,
  AzureUnavailableError,
  CancelledError,
  KubedosError,
  type AzureRequestError,
} from '../../errors';

export type AzureFailureKind = 'throttled' | 'quota' | 'unavailable' | 'permission' | 'invalid' | 'provisioning';

/** Codes of quota and capacity limits (Resource Manager, Compute, Network). */
const QUOTA_CODES = new Set([
  'QuotaExceeded',
  'ResourceQuotaExceeded',
  'OperationNotAllowed', // "…would exceed approved … quota" (checked against the message below)
  'SkuNotAvailable',
  'AllocationFailed',
  'ZonalAllocationFailed',
  'OverconstrainedAllocationRequest',
  'OverconstrainedZonalAllocationRequest',
  'PublicIPCountLimitReached',
  'NetworkInterfacesLimitReached',
]);
const PERMISSION_CODES = new Set([
  'AuthorizationFailed',
  'LinkedAuthorizationFailed',
  'AuthenticationFailed',
  'InvalidAuthenticationToken',
  'InvalidAuthenticationTokenTenant',
  'ExpiredAuthenticationToken',
  'AuthorizationPermissionMismatch',
  'AuthorizationPermissionDenied',
  'InsufficientAccountPermissions',
  'CredentialUnavailableError',
  'AuthenticationError',
  'AggregateAuthenticationError',
]);
const PROVISIONING_CODES = new Set(['OSProvisioningTimedOut', 'OSProvisioningClientError', 'OSProvisioningInternalError', 'VMAgentStatusCommunicationError']);
const TRANSIENT_CODES = new Set([
  'InternalServerError',
  'ServiceUnavailable',
  'ServerBusy',
  'OperationTimedOut',
  'GatewayTimeout',
  'RetryableError',
  'AnotherOperationInProgress',
  'OperationPreempted',
  'Canceled',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EPIPE',
  'REQUEST_SEND_ERROR',
]);

/** Which kind of failure an Azure error code and status are. */
export function azureFailureKind(code: string, status: number | undefined, message: string): AzureFailureKind {
  if (PROVISIONING_CODES.has(code)) return 'provisioning';
  if (status === 429 || code === 'TooManyRequests' || /throttl/i.test(code)) return 'throttled';
  if (QUOTA_CODES.has(code) && (code !== 'OperationNotAllowed' || /quota|limit/i.test(message))) return 'quota';
  if (PERMISSION_CODES.has(code) || status === 401 || status === 403) return 'permission';
  if (TRANSIENT_CODES.has(code) || (status !== undefined && status >= 500)) return 'unavailable';
  if (status === 409 && /another operation|in progress|conflict/i.test(message)) return 'unavailable';
  if (status === undefined && !code) return 'unavailable';
  return 'invalid';
}

/** The spec field an invalid request points at, from the error's target, code or message. */
export function azureFieldOf(code: string, target: string | undefined, message: string): string | undefined {
  const where = `${target ?? ''} ${code} ${message}`;
  if (/ResourceGroupNotFound/.test(code)) return 'resourceGroup';
  if (/SubscriptionNotFound|InvalidSubscriptionId/.test(code)) return 'subscription';
  if (/LocationNotAvailable|NoRegisteredProviderFound|InvalidLocation/.test(code) || /\blocation\b/i.test(target ?? '')) return 'location';
  if (/vmSize|hardwareProfile|SkuNotAvailable|VM ?size/i.test(where)) return 'vmSize';
  if (/subnet|virtualNetwork|InvalidResourceReference/i.test(where)) return 'subnet';
  if (/adminUsername/i.test(where)) return 'adminUsername';
  if (/diskSizeGB|DiskSize/i.test(where)) return 'osDiskSizeGiB';
  if (/storageAccountType/i.test(where)) return 'osDiskType';
  if (/ContainerNotFound|container/i.test(code)) return 'storage.container';
  if (/AccountNotFound|StorageAccount|ENOTFOUND/i.test(code)) return 'storage.account';
  return undefined;
}

export interface AzureErrorParts {
  code: string;
  status: number | undefined;
  message: string;
  /** The request field Azure names (`properties.hardwareProfile.vmSize`). */
  target?: string;
}

/** Code, status, message and target of anything an Azure SDK throws. */
export function azureErrorParts(err: unknown): AzureErrorParts {
  const e = err as { name?: string; code?: unknown; statusCode?: unknown; message?: unknown; details?: unknown; errno?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const lro = /^The long-running operation has failed\. ([A-Za-z0-9_.]+)\. ([\s\S]*)$/.exec(message);
  if (lro) return { code: lro[1]!, status: undefined, message: lro[2]! };
  type Body = { code?: string; message?: string; target?: string };
  const details = e?.details as (Body & { error?: Body }) | undefined;
  const body: Body | undefined = details?.error ?? details;
  const status = typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  const named = e?.name && /Credential|Authentication/.test(e.name) ? e.name : undefined;
  const code = named ?? (typeof e?.code === 'string' && e.code ? e.code : typeof body?.code === 'string' && body.code ? body.code : status !== undefined ? `HTTP ${status}` : '');
  return { code, status, message: typeof body?.message === 'string' && body.message ? body.message : message, target: typeof body?.target === 'string' ? body.target : undefined };
}

export interface AzureFailureContext {
  target: string;
  resourceGroup: string;
  storageAccount: string;
  location: string;
}

function hintFor(kind: AzureFailureKind, parts: AzureErrorParts, field: string | undefined, c: AzureFailureContext): string {
  switch (kind) {
    case 'throttled':
      return 'transient: retried with backoff; fleets on one subscription share its Resource Manager request limits (a smaller rollout batchSize sends fewer requests at once)';
    case 'quota':
      return `retried while the limit lasts: raise the subscription's quota for this VM family or resource in ${c.location} (Azure portal: Subscriptions → Usage + quotas), free some, or choose another vmSize/location`;
    case 'unavailable':
      return 'transient: retried with backoff (Azure or the network to it failed; https://azure.status.microsoft shows outages)';
    case 'permission':
      return /Credential|Authentication(Error)?$/.test(parts.code)
        ? 'the cloud worker signs in with DefaultAzureCredential: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), use workload identity or a managed identity, or run `az login` as the worker user'
        : `give the worker's identity the Contributor role (or Virtual Machine Contributor and Network Contributor) on resource group ${c.resourceGroup}, Reader on the subnet's virtual network, and Storage Blob Data Contributor on storage account ${c.storageAccount} (or set AZURE_STORAGE_CONNECTION_STRING)`;
    case 'provisioning':
      return "the VM's guest did not report \"provisioning complete\" to Azure's WireServer: deploy an image built by KubeDos (its azure reader reports it), or one with walinuxagent or cloud-init's Azure datasource; the boot diagnostics serial log shows how far it booted";
    case 'invalid':
      if (parts.code === 'MissingSubscriptionRegistration') return 'register the resource providers once: az provider register --namespace Microsoft.Compute; az provider register --namespace Microsoft.Network';
      return field ? `fix ${field} in the target spec (${parts.code})` : `check the target spec (subscription, resourceGroup, location, subnet, vmSize, storage) against the subscription (${parts.code})`;
  }
}

/**
 * The SDK's error reduced to its name and message: a RestError carries the whole request (TLS
 * settings, URLs with SAS signatures), which has no business in logs or workflow history.
 */
export function plainCause(err: unknown): Error {
  const e = err as { name?: unknown; message?: unknown } | undefined;
  const plain = new Error(typeof e?.message === 'string' ? e.message : String(err));
  plain.name = typeof e?.name === 'string' ? e.name : 'Error';
  return plain;
}

/** An Azure SDK error as the KubeDos error of its class; KubeDos errors and cancellations pass through. */
export function azureFailure(err: unknown, operation: string, c: AzureFailureContext): KubedosError {
  if (err instanceof KubedosError) return err;
  if ((err as { name?: string } | undefined)?.name === 'AbortError') return new CancelledError(`target ${c.target}: ${operation}`);
  const parts = azureErrorParts(err);
  const kind = azureFailureKind(parts.code, parts.status, parts.message);
  const field = kind === 'invalid' ? azureFieldOf(parts.code, parts.target, parts.message) : undefined;
  const hint = hintFor(kind, parts, field, c);
  const args = [c.target, operation, parts.code || 'error', parts.status, parts.message, hint] as const;
  const cause = { cause: plainCause(err) };
  const made: AzureRequestError =
    kind === 'throttled'
      ? new AzureThrottledError(...args, cause)
      : kind === 'quota'
        ? new AzureQuotaError(...args, cause)
        : kind === 'unavailable'
          ? new AzureUnavailableError(...args, cause)
          : kind === 'permission'
            ? new AzurePermissionError(...args, cause)
            : kind === 'provisioning'
              ? new AzureProvisioningError(...args, cause)
              : new AzureInvalidRequestError(c.target, operation, parts.code || 'error', parts.status, parts.message, field, hint, cause);
  return made;
}

/** Whether an error is Azure's "not found" (404, ResourceNotFound, BlobNotFound, …). */
export function isAzureNotFound(err: unknown): boolean {
  const e = err as { statusCode?: number; code?: string } | undefined;
  return e?.statusCode === 404 || /NotFound$/.test(e?.code ?? '');
}
