/**
 * Deploy-time identity on vSphere: the `guestinfo.*` extraConfig keys of a node's VM, in the form
 * cloud-init's VMware datasource reads — `guestinfo.metadata` / `guestinfo.userdata`, each with
 * its `.encoding` — carrying the node's NoCloud documents (src/targets/nocloud.ts: the same text
 * a cidata seed holds). The image's guestinfo reader (src/foundry/guestinfo-reader.ts) reads them
 * back with vmware-rpctool and applies them with its NoCloud reader.
 *
 * The user-data holds the private host key: the driver writes it through a 0600 file (`govc
 * vm.change -f`), never on a command line, and removes it from the VM's configuration once the
 * node has reported ready (`guestinfo.kubedos.ready`, GUESTINFO_READY_KEY).
 */
import { GUESTINFO_READY_KEY } from '../../foundry/guestinfo-reader';
import { renderNocloud, type NocloudInput } from '../nocloud';

export { GUESTINFO_READY_KEY };

/** The four keys, as extraConfig key → value. */
export interface GuestinfoDocuments {
  'guestinfo.metadata': string;
  'guestinfo.metadata.encoding': 'base64';
  'guestinfo.userdata': string;
  'guestinfo.userdata.encoding': 'base64';
}

/** The keys that carry the private host key, removed once the node is ready. */
export const SECRET_GUESTINFO_KEYS = ['guestinfo.userdata', 'guestinfo.userdata.encoding'] as const;

/** A node's NoCloud meta-data and user-data as guestinfo values (base64, as cloud-init decodes it). */
export function guestinfoDocuments(input: NocloudInput): GuestinfoDocuments {
  const files = renderNocloud(input);
  return {
    'guestinfo.metadata': Buffer.from(files['meta-data']).toString('base64'),
    'guestinfo.metadata.encoding': 'base64',
    'guestinfo.userdata': Buffer.from(files['user-data']).toString('base64'),
    'guestinfo.userdata.encoding': 'base64',
  };
}
