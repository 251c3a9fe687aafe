/**
 * Google Cloud's answers as KubeDos errors. Compute Engine (REST) and Cloud Storage errors carry
 * an HTTP status and a reason (`rateLimitExceeded`, `quotaExceeded`, `forbidden`, `invalid`, …);
 * a failed operation carries `error.errors[].code` (`QUOTA_EXCEEDED`,
 * `ZONE_RESOURCE_POOL_EXHAUSTED`, …). The class (src/errors.ts) says whether the step is retried;
 * the hint what to fix, naming the spec field when the error points at one.
 */
import {
  CancelledError,
  GcpInvalidRequestError,
  GcpPermissionError,
  GcpQuotaError,
  GcpThrottledError,
  GcpUnavailableError,
  KubedosError,
} from '../../errors';

export type GcpFailureKind = 'throttled' | 'quota' | 'unavailable' | 'permission' | 'invalid';

const THROTTLE_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'RATE_LIMIT_EXCEEDED', 'tooManyRequests']);
const QUOTA_REASONS = new Set([
  'quotaExceeded',
  'QUOTA_EXCEEDED',
  'ZONE_RESOURCE_POOL_EXHAUSTED',
  'ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS',
  'resourceExhausted',
  'RESOURCE_EXHAUSTED',
  'dailyLimitExceeded',
]);
const TRANSIENT_REASONS = new Set(['backendError', 'internalError', 'resourceNotReady', 'RESOURCE_NOT_READY', 'RESOURCE_OPERATION_RATE_EXCEEDED', 'UNAVAILABLE', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE']);
const PERMISSION_REASONS = new Set(['forbidden', 'insufficientPermissions', 'accessNotConfigured', 'PERMISSION_DENIED', 'authError', 'required', 'UNAUTHENTICATED', 'CREDENTIALS_MISSING']);

export function gcpFailureKind(reason: string, status: number | undefined): GcpFailureKind {
  if (status === 429 || THROTTLE_REASONS.has(reason)) return 'throttled';
  if (QUOTA_REASONS.has(reason)) return 'quota';
  if (TRANSIENT_REASONS.has(reason) || (status !== undefined && status >= 500)) return 'unavailable';
  if (PERMISSION_REASONS.has(reason) || status === 401 || status === 403) return 'permission';
  if (status === undefined && reason === '') return 'unavailable';
  return 'invalid';
}

/** The spec field an invalid request points at ("Invalid value for field 'resource.machineType'"). */
export function gcpFieldOf(message: string): string | undefined {
  const field = /field '([^']+)'/.exec(message)?.[1] ?? '';
  const where = `${field} ${message}`;
  if (/machineType/i.test(where)) return 'machineType';
  if (/subnetwork/i.test(where)) return 'subnetwork';
  if (/network/i.test(where)) return 'network';
  if (/diskType/i.test(where)) return 'diskType';
  if (/diskSizeGb|disk size/i.test(where)) return 'diskSizeGb';
  if (/bucket/i.test(where)) return 'bucket';
  if (/zone/i.test(field) || /Unknown zone|zone .* does not exist/i.test(message)) return 'zone';
  if (/project/i.test(field) || /project .* (not found|does not exist)/i.test(message)) return 'project';
  return undefined;
}

export interface GcpErrorParts {
  reason: string;
  status: number | undefined;
  message: string;
}

/** Reason, status and message of anything the Google SDKs (gaxios, gax REST, Storage) throw, or of an operation's error. */
export function gcpErrorParts(err: unknown): GcpErrorParts {
  const e = err as { code?: unknown; status?: unknown; message?: unknown; errors?: unknown; response?: { status?: number; data?: unknown }; reason?: unknown } | undefined;
  type Body = { code?: number | string; message?: string; status?: string; errors?: Array<{ reason?: string; code?: string; message?: string }> };
  let body: Body | undefined;
  const text = typeof e?.message === 'string' ? e.message : String(err);
  try {
    const parsed = JSON.parse(text) as { error?: Body };
    if (parsed && typeof parsed === 'object' && parsed.error) body = parsed.error;
  } catch {
    // not a JSON body
  }
  body ??= ((e?.response?.data as { error?: Body } | undefined)?.error ?? (Array.isArray(e?.errors) ? (e as Body) : undefined)) as Body | undefined;
  const status = typeof e?.code === 'number' && e.code >= 100 ? e.code : typeof e?.status === 'number' ? e.status : e?.response?.status;
  const first = body?.errors?.[0];
  const systemCode = typeof e?.code === 'string' ? e.code : undefined;
  const reason = first?.reason ?? first?.code ?? (typeof e?.reason === 'string' ? e.reason : undefined) ?? body?.status ?? systemCode ?? (/default credentials/i.test(text) ? 'CREDENTIALS_MISSING' : '');
  return { reason, status, message: first?.message && first.message !== '...' ? first.message : (body?.message ?? text) };
}

export interface GcpFailureContext {
  target: string;
  project: string;
  zone: string;
  bucket: string;
}

function hintFor(kind: GcpFailureKind, parts: GcpErrorParts, field: string | undefined, c: GcpFailureContext): string {
  switch (kind) {
    case 'throttled':
      return 'transient: retried with backoff; fleets in one project share its API rate limits (a smaller rollout batchSize sends fewer requests at once)';
    case 'quota':
      return `retried while the limit lasts: raise the quota in project ${c.project} (console: IAM & Admin → Quotas; the message names the metric), free some, or choose another machineType or zone than ${c.zone}`;
    case 'unavailable':
      return 'transient: retried with backoff (Google Cloud or the network to it failed; https://status.cloud.google.com shows outages)';
    case 'permission':
      if (parts.reason === 'CREDENTIALS_MISSING') return 'the cloud worker uses Application Default Credentials: set GOOGLE_APPLICATION_CREDENTIALS to a key or workload-identity file, run it on Google Cloud with a service account, or run `gcloud auth application-default login` as the worker user';
      if (parts.reason === 'accessNotConfigured') return `enable the Compute Engine and Cloud Storage APIs in project ${c.project}: gcloud services enable compute.googleapis.com storage.googleapis.com --project ${c.project}`;
      return `give the worker's identity roles/compute.instanceAdmin.v1 and roles/compute.storageAdmin in project ${c.project}, roles/iam.serviceAccountUser on the instances' service account, and roles/storage.objectAdmin on bucket ${c.bucket}`;
    case 'invalid':
      return field ? `fix ${field} in the target spec (${parts.reason || parts.status})` : `check the target spec (project, zone, bucket, machineType, network) against the project (${parts.reason || parts.status})`;
  }
}

/** The SDK's error reduced to its name and message (a gaxios error carries its whole request). */
function plainCause(err: unknown): Error {
  const e = err as { name?: unknown; message?: unknown } | undefined;
  const plain = new Error(typeof e?.message === 'string' ? e.message : String(err));
  plain.name = typeof e?.name === 'string' ? e.name : 'Error';
  return plain;
}

/** A Google SDK error (or an operation's error) as the KubeDos error of its class; KubeDos errors pass through. */
export function gcpFailure(err: unknown, operation: string, c: GcpFailureContext): KubedosError {
  if (err instanceof KubedosError) return err;
  if ((err as { name?: string } | undefined)?.name === 'AbortError') return new CancelledError(`target ${c.target}: ${operation}`);
  const parts = gcpErrorParts(err);
  const kind = gcpFailureKind(parts.reason, parts.status);
  const field = kind === 'invalid' ? gcpFieldOf(parts.message) : undefined;
  const hint = hintFor(kind, parts, field, c);
  const code = parts.reason || (parts.status !== undefined ? `HTTP ${parts.status}` : 'error');
  const args = [c.target, operation, code, parts.status, parts.message, hint, { cause: plainCause(err) }] as const;
  switch (kind) {
    case 'throttled':
      return new GcpThrottledError(...args);
    case 'quota':
      return new GcpQuotaError(...args);
    case 'unavailable':
      return new GcpUnavailableError(...args);
    case 'permission':
      return new GcpPermissionError(...args);
    case 'invalid':
      return new GcpInvalidRequestError(c.target, operation, code, parts.status, parts.message, field, hint, { cause: plainCause(err) });
  }
}

/** Whether an error is Google's "not found". */
export function isGcpNotFound(err: unknown): boolean {
  return gcpErrorParts(err).status === 404;
}
