/**
 * The gcp target's connections: Google's SDKs with Application Default Credentials
 * (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, or the metadata server's
 * service account when the worker runs on Google Cloud). Compute Engine through
 * @google-cloud/compute's REST transport (`fallback: 'rest'`: HTTP/1.1 + JSON, the API's own wire
 * format; Compute Engine has no public gRPC endpoint) at KUBEDOS_GCE_ENDPOINT (default
 * https://compute.googleapis.com), Cloud Storage through @google-cloud/storage at
 * KUBEDOS_GCS_ENDPOINT (default https://storage.googleapis.com), authenticated there too.
 */
import { DisksClient, GlobalOperationsClient, ImagesClient, InstancesClient, ZoneOperationsClient } from '@google-cloud/compute';
import { Storage } from '@google-cloud/storage';
import { env } from '../../config/env';
import { ConfigError } from '../../errors';

export const DEFAULT_GCE_ENDPOINT = 'https://compute.googleapis.com';
export const DEFAULT_GCS_ENDPOINT = 'https://storage.googleapis.com';

export interface GcpConnection {
  images: ImagesClient;
  instances: InstancesClient;
  disks: DisksClient;
  zoneOperations: ZoneOperationsClient;
  globalOperations: GlobalOperationsClient;
  storage: Storage;
}

function endpointUrl(name: 'KUBEDOS_GCE_ENDPOINT' | 'KUBEDOS_GCS_ENDPOINT', fallback: string): URL {
  const value = env(name) ?? fallback;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} ${JSON.stringify(value)} is not a URL`, `use a URL such as ${fallback}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`${name} ${value} must be an http(s) URL`, `use a URL such as ${fallback}`);
  return url;
}

export function connectGcp(projectId: string): GcpConnection {
  const gce = endpointUrl('KUBEDOS_GCE_ENDPOINT', DEFAULT_GCE_ENDPOINT);
  const https = gce.protocol === 'https:';
  const options = {
    projectId,
    fallback: 'rest' as const,
    apiEndpoint: gce.hostname,
    port: gce.port ? Number(gce.port) : https ? 443 : 80,
    protocol: https ? 'https' : 'http',
  };
  const gcs = endpointUrl('KUBEDOS_GCS_ENDPOINT', DEFAULT_GCS_ENDPOINT);
  return {
    images: new ImagesClient(options),
    instances: new InstancesClient(options),
    disks: new DisksClient(options),
    zoneOperations: new ZoneOperationsClient(options),
    globalOperations: new GlobalOperationsClient(options),
    // A custom endpoint is still Google's (or stands in for it): send the credentials there too.
    storage: new Storage({ projectId, apiEndpoint: gcs.origin, useAuthWithCustomEndpoint: true }),
  };
}

export async function closeGcp(c: GcpConnection): Promise<void> {
  await Promise.allSettled([c.images.close(), c.instances.close(), c.disks.close(), c.zoneOperations.close(), c.globalOperations.close()]);
}
