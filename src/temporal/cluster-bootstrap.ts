/**
 * Bootstrap of a Temporal cluster KubeDos did not start: its namespace must exist and KubeDos's
 * search attributes (search-attributes.ts) must be registered there with the right types, or the
 * first fleet fails with "Namespace … has no mapping defined for search attribute KubedosFleet".
 *
 * On connect (CLI and workers) KubeDos checks that, once per process and cheaply: a verdict that
 * all is there is cached per address + namespace + attribute set in the state directory for a
 * day, so commands make no extra round trip. Missing attributes are registered through the
 * operator service when the server allows it; a missing namespace is created only by `kubedos
 * cluster init` (a typo in TEMPORAL_NAMESPACE must not create a namespace). Whatever cannot be
 * done from here stops with ClusterNotReadyError naming the exact `temporal operator` commands
 * (or, for Temporal Cloud, the tcld and UI steps).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { OperatorService, WorkflowService } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { stateDir } from '../config/paths';
import { ClusterNotReadyError, TemporalUnavailableError } from '../errors';
import { logger } from '../log';
import type { ConnectionSettings } from './connection';
import { SEARCH_ATTRIBUTES } from './search-attributes';

/** What either SDK connection (client Connection, worker NativeConnection) offers. */
export interface ClusterServices {
  workflowService: WorkflowService;
  operatorService: OperatorService;
}

export type SearchAttributeType = (typeof SEARCH_ATTRIBUTES)[keyof typeof SEARCH_ATTRIBUTES] | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

const IndexedValueType = temporal.api.enums.v1.IndexedValueType;
const TYPE_BY_NAME: Record<SearchAttributeType, number> = {
  Text: IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
  Keyword: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  Int: IndexedValueType.INDEXED_VALUE_TYPE_INT,
  Double: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
  Bool: IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
  Datetime: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
  KeywordList: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
};
const NAME_BY_TYPE = new Map(Object.entries(TYPE_BY_NAME).map(([name, value]) => [value, name as SearchAttributeType]));

/** The attribute type's name as `temporal operator` spells it (`Keyword`), from the API's enum value or name. */
export function attributeTypeName(value: number | string | null | undefined): string {
  if (typeof value === 'number') return NAME_BY_TYPE.get(value) ?? `type ${value}`;
  if (typeof value === 'string') {
    const numeric = (IndexedValueType as unknown as Record<string, number>)[value];
    return numeric !== undefined ? attributeTypeName(numeric) : value;
  }
  return 'unknown';
}

/** One KubeDos search attribute as the cluster has it. */
export interface AttributeState {
  name: string;
  /** The type KubeDos needs. */
  type: string;
  /** What the namespace has: absent when missing. */
  registered?: string;
  /** Registered by this bootstrap. */
  created?: boolean;
}

/** The bootstrap state of one namespace. */
export interface ClusterState {
  address: string;
  namespace: string;
  namespaceExists: boolean;
  /** Created by this bootstrap. */
  namespaceCreated?: boolean;
  attributes: AttributeState[];
  /** Temporal Cloud (namespaces and attributes are managed with tcld or the Cloud UI). */
  cloud: boolean;
}

export const isReady = (s: ClusterState): boolean => s.namespaceExists && s.attributes.every((a) => a.registered === a.type);

/** Temporal Cloud endpoints: `<ns>.<account>.tmprl.cloud:7233` (mTLS) and `<region>.<provider>.api.temporal.io:7233` (API keys). */
export function isTemporalCloud(address: string): boolean {
  return /\.tmprl\.cloud:\d+$/i.test(address) || /\.api\.temporal\.io:\d+$/i.test(address);
}

/** The gRPC status code of a failed call from either SDK connection. */
function grpcCode(err: unknown): number | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; e = e.cause as typeof e, i++) {
    if (typeof e.code === 'number') return e.code;
  }
  return undefined;
}
const Status = { NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, UNAUTHENTICATED: 16 } as const;
const refused = (err: unknown) => [Status.PERMISSION_DENIED, Status.UNIMPLEMENTED, Status.UNAUTHENTICATED].includes(grpcCode(err) as 7);

/** Read the namespace and its KubeDos search attributes; changes nothing. */
export async function inspectCluster(services: ClusterServices, settings: Pick<ConnectionSettings, 'address' | 'namespace'>): Promise<ClusterState> {
  const state: ClusterState = {
    address: settings.address,
    namespace: settings.namespace,
    namespaceExists: true,
    cloud: isTemporalCloud(settings.address),
    attributes: Object.entries(SEARCH_ATTRIBUTES).map(([name, type]) => ({ name, type })),
  };
  try {
    await services.workflowService.describeNamespace({ namespace: settings.namespace });
  } catch (err) {
    if (grpcCode(err) !== Status.NOT_FOUND) throw unreachable(settings.address, 'describe the namespace', err);
    state.namespaceExists = false;
    return state;
  }
  const listed = await services.operatorService.listSearchAttributes({ namespace: settings.namespace }).catch((err) => {
    // Temporal Cloud does not serve the operator API to every key: then the attributes are unknown.
    if (refused(err)) return undefined;
    throw unreachable(settings.address, 'list the search attributes', err);
  });
  const custom = (listed?.customAttributes ?? {}) as Record<string, number | string>;
  for (const a of state.attributes) if (custom[a.name] !== undefined) a.registered = attributeTypeName(custom[a.name]);
  return state;
}

function unreachable(address: string, what: string, err: unknown): TemporalUnavailableError {
  return new TemporalUnavailableError(`cannot ${what} on the Temporal cluster at ${address}`, 'check TEMPORAL_ADDRESS and the TLS/API key settings', { cause: err });
}

export interface BootstrapOptions {
  /** Create the namespace when it is missing (`kubedos cluster init`). @default false */
  createNamespace?: boolean;
  /** Retention of closed runs in a namespace created here, in days. @default 30 */
  retentionDays?: number;
  /** How long "namespace not found" may last right after the namespace was created. @default 15_000 */
  namespaceWaitMs?: number;
}

/**
 * Bring the namespace to what KubeDos needs: create it (when asked), register every missing
 * attribute. Returns the state afterwards; throws ClusterNotReadyError, with the commands to run,
 * when something is left that the server did not let us do (or that must not be done: an
 * attribute registered with another type is never changed behind the user's back).
 */
export async function bootstrapCluster(services: ClusterServices, settings: Pick<ConnectionSettings, 'address' | 'namespace'>, options: BootstrapOptions = {}): Promise<ClusterState> {
  const state = await inspectCluster(services, settings);
  const blocked: string[] = [];
  if (!state.namespaceExists) {
    if (!options.createNamespace || state.cloud) throw notReady(state, blocked);
    try {
      await services.workflowService.registerNamespace({
        namespace: settings.namespace,
        description: 'KubeDos fleets (created by kubedos cluster init)',
        workflowExecutionRetentionPeriod: msToTs(`${options.retentionDays ?? 30}d`),
      });
      state.namespaceCreated = true;
      logger.info({ address: settings.address, namespace: settings.namespace }, 'created the Temporal namespace');
    } catch (err) {
      if (grpcCode(err) !== Status.ALREADY_EXISTS) {
        if (refused(err)) throw notReady(state, [`the server refused to create namespace ${settings.namespace}: ${(err as Error).message}`]);
        throw unreachable(settings.address, `create namespace ${settings.namespace}`, err);
      }
    }
    state.namespaceExists = true;
  }
  const missing = state.attributes.filter((a) => a.registered === undefined);
  if (missing.length) {
    const request = { namespace: settings.namespace, searchAttributes: Object.fromEntries(missing.map((a) => [a.name, TYPE_BY_NAME[a.type as SearchAttributeType]])) };
    // A namespace just created is "not found" for about a second (the servers' namespace cache).
    const deadline = Date.now() + (options.namespaceWaitMs ?? 15_000);
    for (;;) {
      try {
        await services.operatorService.addSearchAttributes(request);
        for (const a of missing) Object.assign(a, { registered: a.type, created: true });
        logger.info({ address: settings.address, namespace: settings.namespace, attributes: missing.map((a) => a.name) }, 'registered the KubeDos search attributes');
        break;
      } catch (err) {
        const code = grpcCode(err);
        if (code === Status.NOT_FOUND && Date.now() < deadline) {
          await sleep(250);
          continue;
        }
        if (refused(err) || state.cloud) {
          blocked.push(`the server refused to register search attributes: ${(err as Error).message}`);
          break;
        }
        // Another client (a worker starting beside this one) may have registered them meanwhile,
        // which the server reports as a conflict: what counts is what is there now.
        const again = await inspectCluster(services, settings).catch(() => undefined);
        if (again && isReady(again)) {
          state.attributes = again.attributes;
          break;
        }
        throw unreachable(settings.address, 'register the search attributes', err);
      }
    }
  }
  if (!isReady(state)) throw notReady(state, blocked);
  return state;
}

/** The exact commands that make the namespace ready, for the shell of the person reading them. */
export function bootstrapCommands(state: ClusterState, options: { retentionDays?: number } = {}): string[] {
  const wrong = state.attributes.filter((a) => a.registered !== undefined && a.registered !== a.type);
  const toCreate = state.attributes.filter((a) => a.registered !== a.type);
  if (state.cloud) {
    const lines: string[] = [];
    if (!state.namespaceExists) {
      lines.push(`tcld namespace create --namespace ${state.namespace} --region <region> --retention-days ${options.retentionDays ?? 30} --ca-certificate-file <ca.pem>   (or Cloud UI → Namespaces → Create)`);
    }
    if (wrong.length) lines.push(`# ${wrong.map((a) => `${a.name} is ${a.registered}`).join(', ')}: rename it (tcld namespace search-attributes rename --namespace ${state.namespace} --existing-name <name> --new-name <other>)`);
    if (toCreate.length) {
      lines.push(`tcld namespace search-attributes add --namespace ${state.namespace} ${toCreate.map((a) => `--search-attribute ${a.name}=${a.type}`).join(' ')}   (or Cloud UI → Namespaces → ${state.namespace} → Custom Search Attributes)`);
    }
    return lines;
  }
  const conn = `--address ${state.address} --namespace ${state.namespace}`;
  const lines: string[] = [];
  if (!state.namespaceExists) lines.push(`temporal operator namespace create ${conn} --retention ${(options.retentionDays ?? 30) * 24}h`);
  if (wrong.length) lines.push(`temporal operator search-attribute remove ${conn} ${wrong.map((a) => `--name ${a.name}`).join(' ')} --yes`);
  const byType = new Map<string, string[]>();
  for (const a of toCreate) byType.set(a.type, [...(byType.get(a.type) ?? []), a.name]);
  for (const [type, names] of byType) lines.push(`temporal operator search-attribute create ${conn} ${names.map((n) => `--name ${n}`).join(' ')} --type ${type}`);
  return lines;
}

function notReady(state: ClusterState, blocked: string[]): ClusterNotReadyError {
  return new ClusterNotReadyError(state.address, state.namespace, {
    namespaceMissing: !state.namespaceExists,
    missing: state.attributes.filter((a) => a.registered === undefined).map((a) => `${a.name} (${a.type})`),
    wrongType: state.attributes.filter((a) => a.registered !== undefined && a.registered !== a.type).map((a) => `${a.name} is ${a.registered}, needs ${a.type}`),
    blocked,
    commands: bootstrapCommands(state),
    cloud: state.cloud,
  });
}

// --- the once-per-process, cached check on connect ---

/** How long a "ready" verdict is trusted before a command looks again. */
const VERDICT_TTL_MS = 24 * 3600_000;
const checkedThisProcess = new Set<string>();

/** The verdict's key: address, namespace and the attribute set (a KubeDos that needs more looks again). */
function verdictKey(settings: Pick<ConnectionSettings, 'address' | 'namespace'>): string {
  return createHash('sha256').update(JSON.stringify([settings.address, settings.namespace, SEARCH_ATTRIBUTES])).digest('hex').slice(0, 24);
}

/** `<state dir>/cluster/<key>.json`: the cached verdict that a namespace is ready. */
export function verdictFile(settings: Pick<ConnectionSettings, 'address' | 'namespace'>, home = stateDir()): string {
  return path.join(home, 'cluster', `${verdictKey(settings)}.json`);
}

function cachedReady(settings: Pick<ConnectionSettings, 'address' | 'namespace'>): boolean {
  try {
    const v = JSON.parse(readFileSync(verdictFile(settings), 'utf8')) as { address: string; namespace: string; checkedAt: string };
    return v.address === settings.address && v.namespace === settings.namespace && Date.now() - Date.parse(v.checkedAt) < VERDICT_TTL_MS;
  } catch {
    return false;
  }
}

/** Remember that the namespace is ready (an unwritable state dir only costs a check next time). */
export function recordReady(state: ClusterState): void {
  const file = verdictFile(state);
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(`${file}.tmp`, `${JSON.stringify({ address: state.address, namespace: state.namespace, attributes: SEARCH_ATTRIBUTES, checkedAt: new Date().toISOString() }, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
  } catch (err) {
    logger.debug({ file, error: String(err) }, 'could not cache the cluster verdict');
  }
}

/** Forget the cached verdict (after `cluster init`, or a failure that says the cache lied). */
export function forgetVerdict(settings: Pick<ConnectionSettings, 'address' | 'namespace'>): void {
  checkedThisProcess.delete(verdictKey(settings));
  rmSync(verdictFile(settings), { force: true });
}

/**
 * On connect to a cluster KubeDos did not start: make sure its namespace is ready, registering
 * missing attributes when allowed. Free when this process or a recent one already found it ready.
 * The embedded dev server is started with the attributes, so it is never checked.
 */
export async function ensureClusterReady(services: ClusterServices, settings: ConnectionSettings): Promise<void> {
  if (settings.embedded) return;
  const key = verdictKey(settings);
  if (checkedThisProcess.has(key)) return;
  if (!cachedReady(settings)) {
    const state = await bootstrapCluster(services, settings, { createNamespace: false });
    recordReady(state);
  }
  checkedThisProcess.add(key);
}
