/**
 * Manifest signatures: SSHSIG (OpenSSH's `ssh-keygen -Y sign`) with the Foundry's ed25519 key, so
 * anyone can check a manifest with stock OpenSSH and an allowed_signers line:
 *
 *   ssh-keygen -Y verify -f allowed_signers -I kubedos-foundry -n kubedos-manifest \
 *     -s manifest.json.sig < manifest.json
 *
 * The key lives under the state directory and is generated on first use (private key mode 0600).
 * ssh-keygen is run through runTool, like every external tool.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stateDir } from '../config/paths';
import { SignatureInvalidError, ToolFailedError } from '../errors';
import { runTool } from '../exec/run';
import { logger } from '../log';

/** The SSHSIG namespace of manifest signatures: a signature made for anything else never verifies. */
export const MANIFEST_SIGNING_NAMESPACE = 'kubedos-manifest';
/** The principal (identity) in allowed_signers and the key comment. */
export const FOUNDRY_SIGNER_IDENTITY = 'kubedos-foundry';

/** The Foundry's signing key: an ed25519 OpenSSH key pair at `keyFile` / `keyFile.pub`. */
export class FoundrySigner {
  constructor(
    /** Private key path. @default `<state dir>/keys/foundry_ed25519` */
    readonly keyFile: string = path.join(stateDir(), 'keys', 'foundry_ed25519'),
    readonly identity: string = FOUNDRY_SIGNER_IDENTITY,
  ) {}

  /** Generate the key pair if it does not exist yet. Safe against concurrent first uses. */
  async ensureKey(signal?: AbortSignal): Promise<void> {
    if (await exists(this.keyFile)) return;
    const dir = path.dirname(this.keyFile);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(dir, `.keygen-${randomUUID()}`);
    try {
      await runTool(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', this.identity, '-f', tmp], { signal });
      await fs.chmod(tmp, 0o600);
      try {
        await fs.link(tmp, this.keyFile); // fails if another process won the race: keep theirs
        await fs.rename(`${tmp}.pub`, `${this.keyFile}.pub`);
        logger.info({ keyFile: this.keyFile }, 'generated the Foundry signing key');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    } finally {
      await fs.rm(tmp, { force: true });
      await fs.rm(`${tmp}.pub`, { force: true });
    }
  }

  /** The public key line (`ssh-ed25519 AAAA… kubedos-foundry`). */
  async publicKey(): Promise<string> {
    await this.ensureKey();
    try {
      return (await fs.readFile(`${this.keyFile}.pub`, 'utf8')).trim();
    } catch {
      const { stdout } = await runTool(['ssh-keygen', '-y', '-f', this.keyFile]);
      return `${stdout.trim()} ${this.identity}`;
    }
  }

  /** The allowed_signers line that trusts this key for manifest signatures. */
  async allowedSignersLine(): Promise<string> {
    const [type, key] = (await this.publicKey()).split(/\s+/);
    return `${this.identity} namespaces="${MANIFEST_SIGNING_NAMESPACE}" ${type} ${key}`;
  }

  /** Sign bytes; returns the armored SSHSIG signature (`-----BEGIN SSH SIGNATURE-----…`). */
  async sign(data: Buffer, signal?: AbortSignal): Promise<string> {
    await this.ensureKey(signal);
    // No file argument: ssh-keygen signs stdin and writes the signature to stdout.
    const { stdout } = await runTool(['ssh-keygen', '-Y', 'sign', '-n', MANIFEST_SIGNING_NAMESPACE, '-f', this.keyFile], { input: data, signal });
    if (!stdout.includes('BEGIN SSH SIGNATURE')) throw new Error(`ssh-keygen -Y sign printed no signature`);
    return stdout;
  }
}

export interface VerifyOptions {
  /** Path of an OpenSSH allowed_signers file. */
  allowedSigners: string;
  /** @default 'kubedos-foundry' */
  identity?: string;
  /** What was signed, for the error message. @default 'the data' */
  subject?: string;
  signal?: AbortSignal;
}

/**
 * Check an SSHSIG signature of `data` against allowed_signers (namespace kubedos-manifest);
 * throws SignatureInvalidError when it does not verify.
 */
export async function verifySignature(data: Buffer, signature: string, options: VerifyOptions): Promise<void> {
  const subject = options.subject ?? 'the data';
  if (!signature.includes('BEGIN SSH SIGNATURE')) throw new SignatureInvalidError(subject, 'it is not an SSH signature');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-verify-'));
  try {
    const sigFile = path.join(dir, 'manifest.sig');
    await fs.writeFile(sigFile, signature);
    await runTool(
      ['ssh-keygen', '-Y', 'verify', '-f', path.resolve(options.allowedSigners), '-I', options.identity ?? FOUNDRY_SIGNER_IDENTITY, '-n', MANIFEST_SIGNING_NAMESPACE, '-s', sigFile],
      { input: data, signal: options.signal },
    );
  } catch (err) {
    if (err instanceof ToolFailedError) {
      // With a bad signature ssh-keygen says why on stderr; with an unknown key only "Could not verify
      // signature." on stdout.
      const why =
        err.stderrTail.trim().split('\n').pop() ||
        `it was not made by a key that ${options.allowedSigners} trusts as ${options.identity ?? FOUNDRY_SIGNER_IDENTITY} for namespace ${MANIFEST_SIGNING_NAMESPACE}`;
      throw new SignatureInvalidError(subject, why);
    }
    throw err;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}
