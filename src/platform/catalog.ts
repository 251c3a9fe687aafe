/**
 * The closed sets of the platform spec, each a table with a one-line description per entry.
 *
 * The schema validates against these tables and the CLI generates its help from them. Output
 * formats and target types are not here: each is described by its own descriptor beside its
 * implementation, and ./plugins.ts derives the spec's view of them.
 *
 * Pure data: no Node or zod imports, so workflow code may import it.
 */

/** A named entry of a closed set, with the text shown in help and in the JSON Schema. */
export interface CatalogEntry {
  readonly name: string;
  readonly description: string;
}

/** Base distributions (only Debian for now; the enum leaves room for more). */
export const DISTROS = [{ name: 'debian', description: 'Debian GNU/Linux, bootstrapped with mmdebstrap' }] as const satisfies readonly CatalogEntry[];
export type Distro = (typeof DISTROS)[number]['name'];

/** Debian suites, by codename. */
export const SUITES = [
  { name: 'bookworm', description: 'Debian 12' },
  { name: 'trixie', description: 'Debian 13' },
] as const satisfies readonly CatalogEntry[];
export type Suite = (typeof SUITES)[number]['name'];

/** CPU architectures images are built for. */
export const ARCHITECTURES = [{ name: 'amd64', description: 'x86-64' }] as const satisfies readonly CatalogEntry[];
export type Architecture = (typeof ARCHITECTURES)[number]['name'];

/** Debian archive components. */
export const COMPONENTS = [
  { name: 'main', description: 'DFSG-free software' },
  { name: 'contrib', description: 'free software depending on non-free software' },
  { name: 'non-free', description: 'software that is not DFSG-free' },
  { name: 'non-free-firmware', description: 'non-free firmware (bookworm and later)' },
] as const satisfies readonly CatalogEntry[];
export type Component = (typeof COMPONENTS)[number]['name'];

/** How a fleet decides that a freshly booted node is healthy. */
export const HEALTH_CHECK_TYPES = [
  { name: 'readiness', description: "the image's readiness unit reports ready (serial console or metadata callback)" },
  { name: 'tcp', description: 'a TCP connection to a port succeeds' },
  { name: 'http', description: 'an HTTP GET returns the expected status' },
  { name: 'ssh', description: 'a command run over SSH (pinned host key) exits 0' },
] as const satisfies readonly CatalogEntry[];
export type HealthCheckType = (typeof HEALTH_CHECK_TYPES)[number]['name'];

/** What a schedule starts. */
export const SCHEDULE_ACTIONS = [
  { name: 'rebuildHerd', description: "rebuild the fleets' images from nothing, then roll every node onto them" },
  { name: 'build', description: "build the fleets' images and store them; deploy nothing" },
  { name: 'rollout', description: 'roll the fleets onto the newest stored images without rebuilding' },
] as const satisfies readonly CatalogEntry[];
export type ScheduleAction = (typeof SCHEDULE_ACTIONS)[number]['name'];

/** Documented common roles; any DNS-label role is accepted, these are what examples use. */
export const COMMON_ROLES = [
  { name: 'master', description: 'Kubernetes control plane' },
  { name: 'worker', description: 'Kubernetes worker node' },
  { name: 'etcd', description: 'dedicated etcd member' },
  { name: 'lb', description: 'load balancer in front of the control plane or ingress' },
  { name: 'prometheus', description: 'metrics collection' },
  { name: 'grafana', description: 'dashboards' },
  { name: 'storage', description: 'storage node (Ceph, NFS, MinIO, …)' },
] as const satisfies readonly CatalogEntry[];

/**
 * Packages every image gets: what a bootable, SSH-reachable systemd machine needs. The spec's
 * `base.packages` and `images.*.packages` are added to these, never replace them.
 */
export const DEFAULT_BASE_PACKAGES = [
  'linux-image-amd64',
  'systemd-sysv',
  'udev',
  'openssh-server',
  'dbus',
  'initramfs-tools',
  'zstd',
  'iproute2',
  'ca-certificates',
] as const;

/** The `apiVersion` and `kind` this loader understands. */
export const API_VERSION = 'kubedos.dev/v1alpha1';
export const KIND = 'Platform';

/** Names of a table's entries as a non-empty tuple, the shape `z.enum` wants. */
export function namesOf<T extends readonly { readonly name: string }[]>(table: T): readonly [T[number]['name'], ...T[number]['name'][]] {
  return table.map((entry) => entry.name) as unknown as readonly [T[number]['name'], ...T[number]['name'][]];
}
