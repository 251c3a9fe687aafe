/**
 * A node's identity as a NoCloud `cidata` seed, the standard metadata QEMU, Proxmox and vSphere
 * guests read: a small vfat filesystem labelled CIDATA holding `meta-data` (instance-id,
 * local-hostname) and `user-data` (#cloud-config). Only standard cloud-init keys are written, so
 * a stock cloud-init image applies the seed exactly as KubeDos's own first-boot reader
 * (src/foundry/nocloud-reader.ts) does:
 *
 *   hostname, ssh_keys.ed25519_private/_public (the Foundry's host key), ssh_genkeytypes: []
 *   (no other, unpinned keys), ssh_authorized_keys (+ disable_root: false so they reach root),
 *   write_files: /etc/machine-id.
 *
 * The seed is made without mounting anything (mkfs.vfat + mcopy), then stored as qcow2 (a 36 MiB
 * FAT32 becomes ~0.5 MiB, cheap to upload to a remote host). It holds the private host key:
 * written 0600 in 0700 directories, and removed with the node.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mkfsVfat } from '../foundry/tools/mkfs';
import { mcopy } from '../foundry/tools/mtools';
import { qemuImgConvert } from '../foundry/tools/qemu-img';
import type { NodeIdentity } from './identity';

export interface NocloudInput {
  /** meta-data instance-id: the node id (cloud-init runs its per-instance modules once per id). */
  instanceId: string;
  identity: NodeIdentity;
  authorizedKeys: readonly string[];
}

export interface NocloudFiles {
  'meta-data': string;
  'user-data': string;
}

/** Label of the seed filesystem, as NoCloud readers look for it. */
export const CIDATA_LABEL = 'CIDATA';
/** FAT32 needs 65525 clusters; 36 MiB of 512-byte clusters clears that (mtools insists). */
const SEED_SIZE_KIB = 36 * 1024;

/** A YAML single-quoted scalar: only `'` is special (doubled). One line only. */
export function yamlQuote(value: string, what: string): string {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`${what} must be a single line: ${JSON.stringify(value.slice(0, 60))}`);
  return `'${value.replace(/'/g, "''")}'`;
}

/** A YAML literal block (`|`) at `indent` spaces: every line kept as is, one final newline. */
function yamlBlock(value: string, indent: number): string {
  const pad = ' '.repeat(indent);
  const lines = value.replace(/\n+$/, '').split('\n');
  if (lines.some((l) => /\r|\0/.test(l) || /^\s/.test(l))) throw new TypeError('a literal block may not hold CR, NUL or lines starting with a space');
  return `|\n${lines.map((l) => (l === '' ? '' : `${pad}${l}`)).join('\n')}\n`;
}

const HOSTNAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** meta-data and user-data of a node. */
export function renderNocloud(input: NocloudInput): NocloudFiles {
  const { identity } = input;
  if (!HOSTNAME_RE.test(identity.hostname)) throw new TypeError(`invalid hostname ${JSON.stringify(identity.hostname)}`);
  if (!/^[0-9a-f]{32}$/.test(identity.machineId)) throw new TypeError(`invalid machine-id ${JSON.stringify(identity.machineId)}`);
  const meta = [`instance-id: ${yamlQuote(input.instanceId, 'instance-id')}`, `local-hostname: ${yamlQuote(identity.hostname, 'hostname')}`, ''].join('\n');
  const user: string[] = [
    '#cloud-config',
    `# KubeDos node ${input.instanceId}: identity made by the Foundry at deploy time (standard cloud-init keys).`,
    `hostname: ${yamlQuote(identity.hostname, 'hostname')}`,
    'preserve_hostname: false',
    'ssh_deletekeys: true',
    'ssh_genkeytypes: []',
    'ssh_keys:',
    `  ed25519_private: ${yamlBlock(identity.hostKeyPrivate, 4)}  ed25519_public: ${yamlQuote(identity.hostKeyPublic, 'host public key')}`,
    'disable_root: false',
  ];
  if (input.authorizedKeys.length > 0) {
    user.push('ssh_authorized_keys:');
    input.authorizedKeys.forEach((k, i) => user.push(`  - ${yamlQuote(k.trim(), `authorizedKeys[${i}]`)}`));
  }
  user.push('write_files:', '  - path: /etc/machine-id', "    permissions: '0444'", `    content: ${yamlBlock(identity.machineId, 6)}`);
  return { 'meta-data': meta, 'user-data': user.join('\n') };
}

/** vfat volume id (8 hex digits) of a node's seed, derived from its id. */
function volumeId(instanceId: string): string {
  return createHash('sha256').update(`cidata:${instanceId}`).digest('hex').slice(0, 8);
}

/**
 * Write the seed of a node to `out` (qcow2, mode 0600). Works in a private temporary directory
 * that is removed whatever happens.
 */
export async function writeNocloudSeed(input: NocloudInput, out: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  const files = renderNocloud(input);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-cidata-')); // 0700
  try {
    const raw = path.join(dir, 'seed.raw');
    await mkfsVfat({ image: raw, sizeKiB: SEED_SIZE_KIB, volumeId: volumeId(input.instanceId), label: CIDATA_LABEL }, { signal: options.signal });
    for (const [name, content] of Object.entries(files)) {
      const file = path.join(dir, name);
      await fs.writeFile(file, content, { mode: 0o600 });
      await mcopy(raw, file, name, { signal: options.signal });
    }
    const tmp = `${out}.tmp-${process.pid}`;
    await qemuImgConvert({ source: raw, sourceFormat: 'raw', dest: tmp, destFormat: 'qcow2' }, { signal: options.signal });
    await fs.chmod(tmp, 0o600);
    await fs.rename(tmp, out);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
