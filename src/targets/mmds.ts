/**
 * Deploy-time identity for Firecracker microVMs: the MMDS document a driver PUTs to Firecracker's
 * `/mmds` endpoint before boot. It holds the node's NoCloud files (the same text a cidata seed
 * carries, src/targets/nocloud.ts) as two strings, which the image's MMDS reader
 * (src/foundry/mmds-reader.ts) reads back as text and applies with its NoCloud reader.
 */
import { renderNocloud, type NocloudInput } from './nocloud';

export interface MmdsDocument {
  latest: { 'meta-data': string; 'user-data': string };
}

export function mmdsDocument(input: NocloudInput): MmdsDocument {
  const files = renderNocloud(input);
  return { latest: { 'meta-data': files['meta-data'], 'user-data': files['user-data'] } };
}
