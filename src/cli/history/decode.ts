/**
 * Decoding a run's history: every payload through the codecs (`decodeHistoryPayloads`), then
 * values, times, enum names and failures read out of the events. Pure but for the codecs.
 */
import { defaultPayloadConverter, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { ENCRYPTED_ENCODING } from '../../temporal/codec';
import type { FailureSummary, History } from './types';

export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
export type Payload = temporal.api.common.v1.IPayload;
type Payloads = temporal.api.common.v1.IPayloads;
type Failure = temporal.api.failure.v1.IFailure;
export const enums = temporal.api.enums.v1;

const text = (b: Uint8Array | string | null | undefined) => (b == null ? undefined : typeof b === 'string' ? b : Buffer.from(b).toString('utf8'));

function isPayload(value: unknown): value is Payload {
  const v = value as Payload | null;
  return typeof v === 'object' && v !== null && typeof v.metadata === 'object' && v.metadata !== null && 'encoding' in v.metadata;
}

/**
 * Run every payload of a history through the codecs (in decode order), in place. Search
 * attributes are never encoded and are left alone. A payload a codec cannot decode (a key this
 * process lacks) stays as it is; the count of those is returned so callers can say so.
 */
export async function decodeHistoryPayloads(history: History, codecs: readonly PayloadCodec[]): Promise<{ undecodable: number; errors: Error[] }> {
  const slots: { holder: Record<string, unknown>; key: string; payload: Payload }[] = [];
  const seen = new Set<unknown>();
  const walk = (node: unknown) => {
    if (typeof node !== 'object' || node === null || seen.has(node) || ArrayBuffer.isView(node)) return;
    seen.add(node);
    for (const [key, value] of Object.entries(node)) {
      if (key === 'searchAttributes') continue;
      if (isPayload(value)) slots.push({ holder: node as Record<string, unknown>, key, payload: value });
      else walk(value);
    }
  };
  walk(history);
  const errors: Error[] = [];
  let undecodable = 0;
  for (const slot of slots) {
    let payloads: Payload[] = [slot.payload];
    try {
      for (const codec of [...codecs].reverse()) payloads = await codec.decode(payloads as never);
      slot.holder[slot.key] = payloads[0];
    } catch (err) {
      undecodable++;
      if (errors.length < 3) errors.push(err as Error);
    }
  }
  return { undecodable, errors };
}

/** Whether a payload is still encrypted (decoding it failed). */
export function isEncrypted(payload: Payload | null | undefined): boolean {
  return text(payload?.metadata?.encoding) === ENCRYPTED_ENCODING;
}

/** What a payload that could not be decrypted reads as. */
export const ENCRYPTED_VALUE = '‹encrypted›';

/** The value of a payload; ENCRYPTED_VALUE, or a placeholder naming its encoding, when it cannot be read. */
export function valueOf(p: Payload | null | undefined): unknown {
  if (!p) return undefined;
  if (isEncrypted(p)) return ENCRYPTED_VALUE;
  try {
    return defaultPayloadConverter.fromPayload(p as never);
  } catch {
    return `‹${text(p.metadata?.encoding) ?? 'unknown'} payload›`;
  }
}

export const valuesOf = (ps: Payloads | null | undefined): unknown[] => (ps?.payloads ?? []).map(valueOf);

/** Milliseconds of a proto Timestamp or Duration (seconds as Long, number or string, as decoders vary). */
export function optionalTsToMs(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(String(ts.seconds ?? 0)) * 1000 + Math.floor((ts.nanos ?? 0) / 1_000_000);
}

/** A proto int64 (Long, number or string) as a number; 0 when absent. */
export const num = (v: unknown): number => Number(v == null ? 0 : String(v));

/** An enum value as a word: `RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED` → `maximum-attempts-reached`. */
export function enumName(table: Record<string, unknown>, value: unknown, prefix: string): string | undefined {
  if (value == null) return undefined;
  const name = typeof value === 'string' ? value : Object.keys(table).find((k) => table[k] === value);
  if (!name) return String(value);
  return name.replace(prefix, '').toLowerCase().replace(/_/g, '-');
}

const RETRY_STATES: Record<string, string | undefined> = {
  unspecified: undefined,
  'in-progress': 'will be retried',
  'non-retryable-failure': 'not retried: the error type is non-retryable',
  timeout: 'gave up: out of time (schedule-to-close or run timeout)',
  'maximum-attempts-reached': 'gave up: no attempts left',
  'retry-policy-not-set': undefined,
  'internal-server-error': 'gave up: server error',
  'cancel-requested': 'not retried: cancellation requested',
};

function retryStateText(value: unknown): string | undefined {
  const name = enumName(enums.RetryState as never, value, 'RETRY_STATE_');
  return name === undefined ? undefined : name in RETRY_STATES ? RETRY_STATES[name] : name;
}

function failureKind(f: Failure): string | undefined {
  if (f.applicationFailureInfo) return f.applicationFailureInfo.type || 'Error';
  if (f.timeoutFailureInfo) return `timeout (${enumName(enums.TimeoutType as never, f.timeoutFailureInfo.timeoutType, 'TIMEOUT_TYPE_')})`;
  if (f.canceledFailureInfo) return 'cancelled';
  if (f.terminatedFailureInfo) return 'terminated';
  if (f.serverFailureInfo) return 'server error';
  if (f.resetWorkflowFailureInfo) return 'reset';
  return undefined;
}

function oneFailure(f: Failure): string {
  const kind = failureKind(f);
  const message = f.message || '';
  if (f.activityFailureInfo) return `activity ${f.activityFailureInfo.activityType?.name ?? ''} failed`.trim();
  if (f.childWorkflowExecutionFailureInfo) return `child ${f.childWorkflowExecutionFailureInfo.workflowExecution?.workflowId ?? ''} failed`.trim();
  return kind && message ? `${kind}: ${message}` : kind || message || 'unknown failure';
}

/** A failure and its causes, as recorded. */
export function failureSummary(f: Failure | null | undefined, retryState?: unknown): FailureSummary | undefined {
  if (!f) return undefined;
  const causes: string[] = [];
  for (let c = f.cause; c && causes.length < 5; c = c.cause) causes.push(oneFailure(c));
  return {
    type: failureKind(f),
    message: f.message || '',
    causes,
    nonRetryable: f.applicationFailureInfo?.nonRetryable || undefined,
    retryState: retryStateText(retryState),
  };
}
