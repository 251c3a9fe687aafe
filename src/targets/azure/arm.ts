/**
 * The azure target's connections: Microsoft's SDKs with DefaultAzureCredential (environment,
 * workload identity, managed identity, Azure CLI, … in that SDK's order), Resource Manager at
 * KUBEDOS_AZURE_ARM_ENDPOINT (default the public cloud) with extra CAs from
 * KUBEDOS_AZURE_ARM_CA_FILE, and Blob Storage either through the same credential at
 * https://<account>.blob.core.windows.net or, when AZURE_STORAGE_CONNECTION_STRING is set (the
 * Storage SDK's and Azure CLI's own variable: account key or SAS, and the endpoint, e.g.
 * Azurite's), through that. No secret is ever in the spec.
 *
 * Long-running operations (core-lro pollers) are awaited with a heartbeat every few seconds that
 * carries the poller's serialized state, so a retried activity resumes polling the same
 * operation (restorePoller) instead of sending the request again.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { ComputeManagementClient, restorePoller } from '@azure/arm-compute';
import { NetworkManagementClient } from '@azure/arm-network';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';
import { createDefaultHttpClient, createEmptyPipeline, createPipelineRequest, tlsPolicy } from '@azure/core-rest-pipeline';
import { env } from '../../config/env';
import { ConfigError } from '../../errors';
import { resumedOperation, type DriverContext, type ProgressDetail } from '../driver';

export const DEFAULT_ARM_ENDPOINT = 'https://management.azure.com';
/** Heartbeat period while an operation runs (the create activity's heartbeat timeout is 20 s). */
export const HEARTBEAT_MS = 5_000;

export interface AzureConnection {
  compute: ComputeManagementClient;
  network: NetworkManagementClient;
  blobService: BlobServiceClient;
  /** GET a URL Azure handed out (a SAS URI), through the same TLS trust as Resource Manager. */
  fetchText(url: string, signal?: AbortSignal): Promise<{ status: number; body: string }>;
}

export interface AzureConnectionOptions {
  subscription: string;
  storageAccount: string;
  /** @default DefaultAzureCredential */
  credential?: TokenCredential;
}

/** Extra CAs for Resource Manager, besides the system roots (Node's `ca` replaces them otherwise). */
function trustedCas(): string[] | undefined {
  const file = env('KUBEDOS_AZURE_ARM_CA_FILE');
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`KUBEDOS_AZURE_ARM_CA_FILE ${file} cannot be read: ${(err as Error).message}`, 'point it at a PEM file of CA certificates, or unset it');
  }
  return [...rootCertificates, pem];
}

function armEndpoint(): string {
  const value = env('KUBEDOS_AZURE_ARM_ENDPOINT') ?? DEFAULT_ARM_ENDPOINT;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`KUBEDOS_AZURE_ARM_ENDPOINT ${JSON.stringify(value)} is not a URL`, `use an https URL such as ${DEFAULT_ARM_ENDPOINT}`);
  }
  if (url.protocol !== 'https:') throw new ConfigError(`KUBEDOS_AZURE_ARM_ENDPOINT ${value} must be https (Azure SDKs send tokens over TLS only)`, `use an https URL such as ${DEFAULT_ARM_ENDPOINT}`);
  return value.replace(/\/+$/, '');
}

/** `AccountName=…` of a storage connection string. */
function accountOfConnectionString(cs: string): string | undefined {
  return /(?:^|;)\s*AccountName=([^;]+)/i.exec(cs)?.[1]?.trim();
}

export function connectAzure(o: AzureConnectionOptions): AzureConnection {
  const credential = o.credential ?? new DefaultAzureCredential();
  const endpoint = armEndpoint();
  const ca = trustedCas();
  const tlsOptions = ca ? { ca } : undefined;
  const scopes = [`${endpoint === DEFAULT_ARM_ENDPOINT ? DEFAULT_ARM_ENDPOINT : endpoint}/.default`];
  const compute = new ComputeManagementClient(credential, o.subscription, { endpoint, credentials: { scopes }, ...(tlsOptions ? { tlsOptions } : {}) });
  const network = new NetworkManagementClient(credential, o.subscription, { endpoint, credentialScopes: scopes, ...(tlsOptions ? { tlsOptions } : {}) });

  // The Storage SDK reads AZURE_STORAGE_CONNECTION_STRING only when told to; so does this.
  const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
  let blobService: BlobServiceClient;
  if (connectionString) {
    const account = accountOfConnectionString(connectionString);
    if (account !== o.storageAccount) {
      throw new ConfigError(
        `AZURE_STORAGE_CONNECTION_STRING is for storage account ${JSON.stringify(account ?? '')}, but the target uploads to ${o.storageAccount}`,
        'set storage.account to the connection string\'s account, or unset AZURE_STORAGE_CONNECTION_STRING to sign in with DefaultAzureCredential',
      );
    }
    blobService = BlobServiceClient.fromConnectionString(connectionString);
  } else {
    blobService = new BlobServiceClient(`https://${o.storageAccount}.blob.core.windows.net`, credential);
  }

  const pipeline = createEmptyPipeline();
  if (tlsOptions) pipeline.addPolicy(tlsPolicy(tlsOptions));
  const http = createDefaultHttpClient();
  return {
    compute,
    network,
    blobService,
    async fetchText(url, signal) {
      const response = await pipeline.sendRequest(http, createPipelineRequest({ url, method: 'GET', abortSignal: signal, timeout: 30_000 }));
      return { status: response.status, body: response.bodyAsText ?? '' };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Long-running operations

/** The poller shape of core-lro 3 (what arm-compute's operations return). */
export interface Poller<T> extends PromiseLike<T> {
  submitted(): Promise<void>;
  serialize(): Promise<string>;
  onProgress(callback: () => void): () => void;
  pollUntilDone(options?: { abortSignal?: AbortSignal }): Promise<T>;
}

/** What a heartbeat carries about an Azure operation: which one, and the poller's state. */
export function encodeOperation(key: string, state: string): string {
  return JSON.stringify({ azure: key, poller: state });
}

/** The poller state a previous attempt heartbeated for operation `key`, if any. */
export function previousOperation(previous: ProgressDetail | undefined, key: string): string | undefined {
  const op = resumedOperation(previous);
  if (!op) return undefined;
  try {
    const parsed = JSON.parse(op) as { azure?: unknown; poller?: unknown };
    return parsed.azure === key && typeof parsed.poller === 'string' ? parsed.poller : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Await a long-running operation with heartbeats carrying its state (`key` names it, e.g.
 * `create-vm:<name>`). `restored` is true when `poller` continues a previous attempt's operation.
 */
export async function awaitOperation<T>(poller: Poller<T>, key: string, step: string, ctx: DriverContext): Promise<T> {
  await poller.submitted();
  let state = await poller.serialize();
  const beat = () => ctx.progress?.({ step, resume: { operation: encodeOperation(key, state) } });
  beat();
  const timer = setInterval(beat, HEARTBEAT_MS);
  const off = poller.onProgress(() => {
    void poller.serialize().then((s) => {
      state = s;
    }, () => undefined);
  });
  try {
    return await poller.pollUntilDone({ abortSignal: ctx.signal });
  } finally {
    clearInterval(timer);
    off();
  }
}

/** A poller for an operation a previous attempt started (arm-compute's restorePoller). */
export function restoredPoller<T>(compute: ComputeManagementClient, state: string, source: (...args: never[]) => unknown, intervalMs: number, signal?: AbortSignal): Poller<T> {
  return restorePoller(compute, state, source as never, { updateIntervalInMs: intervalMs, abortSignal: signal }) as unknown as Poller<T>;
}
