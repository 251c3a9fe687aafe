/**
 * Field schemas that several target types share: an SSH connection with a pinned host key, "this
 * machine or an SSH host", and the size of a node. Each target's own schema lives in its
 * descriptor (src/targets/<type>/index.ts) and is built from these and ./fields.
 */
import { z } from 'zod';
import { hostAddress, hostKeyPin, localPath, objectRule, size } from './fields';
import { show } from './show';

const MiB = 2 ** 20;

const HOST_KEY_PIN_MESSAGE =
  'a host key must be pinned: set hostKey (OpenSSH public key or SHA256 fingerprint) or knownHosts; KubeDos never trusts a host key on first use';

/** An SSH connection; `hostKey` or `knownHosts` is required, so no host key is ever trusted on first use. */
export const sshConnectionSchema = z
  .strictObject({
    host: hostAddress.describe('Host name or IP address'),
    port: z.int().min(1).max(65_535).default(22).describe('SSH port'),
    user: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]*$/, { error: (iss) => `invalid user name ${show(iss.input)}` })
      .default('root')
      .describe('Remote user'),
    identityFile: localPath('identityFile').optional().describe('Private key file on the worker; default: the SSH agent'),
    hostKey: hostKeyPin.optional().describe('Pinned host key: an OpenSSH public key line or its SHA256:… fingerprint'),
    knownHosts: localPath('knownHosts').optional().describe('known_hosts file on the worker holding the pinned host key'),
  })
  .superRefine(
    ...objectRule((ssh) => (ssh.hostKey === undefined && ssh.knownHosts === undefined ? { message: HOST_KEY_PIN_MESSAGE } : undefined)),
  )
  .describe('An SSH connection with a pinned host key');

/** `local` for this machine, or an SSH connection. */
export const hostSchema = z
  .union([z.literal('local'), sshConnectionSchema], {
    error: (iss) => `expected "local" or an SSH connection mapping {host, user, port, hostKey or knownHosts}, got ${show(iss.input)}`,
  })
  .describe('"local" for this machine, or an SSH connection');

/** Memory and vCPUs of each node (spread into a target's schema). */
export function machineShape(defaults: { memory: string; cpus: number; maxCpus?: number } = { memory: '1GiB', cpus: 2 }) {
  return {
    memory: size(64 * MiB).prefault(defaults.memory).describe(`Memory per node, e.g. ${defaults.memory} (parsed to bytes)`),
    cpus: z
      .int()
      .min(1)
      .max(defaults.maxCpus ?? 256)
      .default(defaults.cpus)
      .describe('Virtual CPUs per node'),
  };
}

/** A parsed SSH connection (`hostKey` or `knownHosts` is set). */
export type SshConnectionSpec = z.output<typeof sshConnectionSchema>;
/** A parsed host: `local` or an SSH connection. */
export type HostSpec = z.output<typeof hostSchema>;
