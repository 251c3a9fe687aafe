/**
 * Which Foundry keys this machine trusts for manifest signatures: an OpenSSH allowed_signers
 * file. The trust never comes from the store itself (whoever can write the store could replace
 * a key kept there); it comes from, in order:
 *
 * 1. an explicit file (`--allowed-signers FILE`, or the caller's option);
 * 2. `<state dir>/keys/allowed_signers`, installed by the operator on deploy hosts
 *    (`kubedos store key` on the Foundry prints the line to put there);
 * 3. this machine's own Foundry key (`<state dir>/keys/foundry_ed25519.pub`), when this machine is
 *    the Foundry — an existing key only, never a freshly generated one.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stateDir } from '../config/paths';
import { ConfigError } from '../errors';
import { FOUNDRY_SIGNER_IDENTITY, MANIFEST_SIGNING_NAMESPACE } from './signing';

/** An allowed_signers file to verify with; `dispose` removes it when it was derived. */
export interface TrustedSigners {
  file: string;
  /** Where the trust came from, for messages. */
  source: string;
  dispose(): Promise<void>;
}

/** `<state dir>/keys/allowed_signers`: the operator-installed trust of a deploy host. */
export function installedAllowedSignersPath(): string {
  return path.join(stateDir(), 'keys', 'allowed_signers');
}

/** The allowed_signers line trusting an OpenSSH public key line for manifest signatures. */
export function allowedSignersLine(publicKey: string, identity = FOUNDRY_SIGNER_IDENTITY): string {
  const [type, key] = publicKey.trim().split(/\s+/);
  if (!type || !key) throw new ConfigError(`"${publicKey.slice(0, 40)}…" is not an OpenSSH public key line`, 'expected "ssh-ed25519 AAAA… comment"');
  return `${identity} namespaces="${MANIFEST_SIGNING_NAMESPACE}" ${type} ${key}`;
}

async function readable(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}

/**
 * Resolve the trusted Foundry keys (see the module comment for the order). Throws ConfigError
 * naming every place looked at when none exists.
 */
export async function trustedSigners(options: { allowedSigners?: string; keyFile?: string } = {}): Promise<TrustedSigners> {
  const keep = async () => undefined;
  if (options.allowedSigners) {
    const file = path.resolve(options.allowedSigners);
    if (!(await readable(file))) {
      throw new ConfigError(`--allowed-signers ${file} cannot be read`, 'give an OpenSSH allowed_signers file; `kubedos store key` on the Foundry prints its line');
    }
    return { file, source: file, dispose: keep };
  }
  const installed = installedAllowedSignersPath();
  if (await readable(installed)) return { file: installed, source: installed, dispose: keep };
  const pub = `${options.keyFile ?? path.join(stateDir(), 'keys', 'foundry_ed25519')}.pub`;
  if (await readable(pub)) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-trust-'));
    const file = path.join(dir, 'allowed_signers');
    await fs.writeFile(file, `${allowedSignersLine(await fs.readFile(pub, 'utf8'))}\n`);
    return { file, source: `this machine's Foundry key ${pub}`, dispose: () => fs.rm(dir, { recursive: true, force: true }) };
  }
  throw new ConfigError(
    `no trusted Foundry key: neither ${installed} nor the Foundry key ${pub} exists`,
    `run \`kubedos store key > allowed_signers\` on the Foundry, copy the file to ${installed} on this machine (or pass --allowed-signers FILE)`,
  );
}

/** Run `fn` with the trusted signers file, removing a derived one afterwards. */
export async function withTrustedSigners<T>(options: { allowedSigners?: string; keyFile?: string }, fn: (trust: TrustedSigners) => Promise<T>): Promise<T> {
  const trust = await trustedSigners(options);
  try {
    return await fn(trust);
  } finally {
    await trust.dispose();
  }
}
