/**
 * How to reach Temporal. With TEMPORAL_ADDRESS set, an existing cluster (with namespace, mTLS or an
 * API key from the standard TEMPORAL_* variables); otherwise the embedded stack under the state dir.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors';
import { env } from '../config/env';

export interface TlsSettings {
  clientCertPath?: string;
  clientKeyPath?: string;
  serverCaCertPath?: string;
  serverName?: string;
}

export interface ConnectionSettings {
  /** host:port of the frontend. */
  address: string;
  namespace: string;
  /** Undefined means plaintext (the embedded dev server). */
  tls?: TlsSettings;
  apiKey?: string;
  /** Base URL of the Web UI, when known. */
  uiUrl?: string;
  embedded: boolean;
}

/** Settings for an external cluster, or undefined when TEMPORAL_ADDRESS is not set. */
export function externalSettings(): ConnectionSettings | undefined {
  const address = env('TEMPORAL_ADDRESS');
  if (!address) return undefined;
  if (!/^[^\s:]+:\d{1,5}$/.test(address)) {
    throw new ConfigError(`TEMPORAL_ADDRESS: "${address}" is not host:port`, 'for example TEMPORAL_ADDRESS=temporal.example.com:7233');
  }
  const tls: TlsSettings = {
    clientCertPath: env('TEMPORAL_TLS_CLIENT_CERT_PATH'),
    clientKeyPath: env('TEMPORAL_TLS_CLIENT_KEY_PATH'),
    serverCaCertPath: env('TEMPORAL_TLS_SERVER_CA_CERT_PATH'),
    serverName: env('TEMPORAL_TLS_SERVER_NAME'),
  };
  if (Boolean(tls.clientCertPath) !== Boolean(tls.clientKeyPath)) {
    throw new ConfigError(
      'TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together',
      'set both to PEM files for mTLS, or neither',
    );
  }
  const apiKey = env('TEMPORAL_API_KEY');
  const wantsTls = Object.values(tls).some(Boolean) || apiKey !== undefined;
  return {
    address,
    namespace: env('TEMPORAL_NAMESPACE') ?? 'default',
    tls: wantsTls ? tls : undefined,
    apiKey,
    uiUrl: env('KUBEDOS_UI_URL'),
    embedded: false,
  };
}

function readPem(path: string | undefined, variable: string): Buffer | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${variable}: cannot read "${path}"`, 'point it at a readable PEM file', { cause: err });
  }
}

/** The `tls` option shared by Connection.connect and NativeConnection.connect. */
export function sdkTlsOption(settings: ConnectionSettings) {
  if (!settings.tls) return undefined;
  const cert = readPem(settings.tls.clientCertPath, 'TEMPORAL_TLS_CLIENT_CERT_PATH');
  const key = readPem(settings.tls.clientKeyPath, 'TEMPORAL_TLS_CLIENT_KEY_PATH');
  const ca = readPem(settings.tls.serverCaCertPath, 'TEMPORAL_TLS_SERVER_CA_CERT_PATH');
  return {
    serverNameOverride: settings.tls.serverName,
    serverRootCACertificate: ca,
    clientCertPair: cert && key ? { crt: cert, key } : undefined,
  };
}

/** Link to one workflow run in the Web UI, when the UI address is known. */
export function workflowUiLink(settings: ConnectionSettings, workflowId: string, runId?: string): string | undefined {
  if (!settings.uiUrl) return undefined;
  const base = settings.uiUrl.replace(/\/+$/, '');
  const ns = encodeURIComponent(settings.namespace);
  const id = encodeURIComponent(workflowId);
  return runId ? `${base}/namespaces/${ns}/workflows/${id}/${runId}/history` : `${base}/namespaces/${ns}/workflows/${id}`;
}
