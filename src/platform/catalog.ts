/**
 * The closed sets of the platform spec, each a table with a one-line description per entry.
 *
 * The schema validates against these tables, the CLI generates its help from them, and the build
 * format and target driver registries are typed by the unions derived here, so adding an entry is
 * the first (and for the spec, the only) step of adding a format or a target type.
 *
 * Pure data: no Node or zod imports, so workflow code may import it.
 */

/** A named entry of a closed set, with the text shown in help and in the JSON Schema. */
export interface CatalogEntry {
  readonly name: string;
  readonly description: string;
}

/** Artifact formats the Foundry can manufacture from one image. */
export const OUTPUT_FORMATS = [
  { name: 'raw', description: 'Sparse raw GPT disk image (UEFI); QEMU/KVM, Proxmox, dd to bare metal' },
  { name: 'qcow2', description: 'QEMU copy-on-write disk image; QEMU/KVM and Proxmox' },
  { name: 'vmdk', description: 'VMware streamOptimized disk for ESXi/vSphere' },
  { name: 'ova', description: 'OVF appliance (descriptor + VMDK) for vSphere import' },
  { name: 'firecracker', description: 'Firecracker/Kata microVM bundle: uncompressed vmlinux, initrd, ext4 rootfs' },
  { name: 'iso', description: 'Bootable live ISO (hybrid BIOS/UEFI) running the image from squashfs' },
  { name: 'installer-media', description: 'Debian installer ISO repacked with a preseed that installs the image' },
  { name: 'ami', description: 'AWS: disk uploaded to S3 and imported as an AMI' },
  { name: 'azure', description: 'Azure: fixed-size VHD for a managed image' },
  { name: 'gce', description: 'Google Compute Engine: disk.raw in a tar.gz for image import' },
  { name: 'pxe', description: 'Network boot: kernel, initrd and squashfs root for PXE/iPXE' },
] as const satisfies readonly CatalogEntry[];

/**
 * `installerIso.source` value that asks the Foundry to assemble Debian installer media itself, from
 * the build host's debian-installer-12-netboot-amd64 package laid out like Debian's mini.iso.
 */
export const ASSEMBLED_INSTALLER_ISO = 'debian-mini';

/** Name of an output format, e.g. `qcow2`. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number]['name'];

/** Formats accepted by a target type; `any` when the driver does not boot the artifact itself. */
export type AcceptedFormats = readonly OutputFormat[] | 'any';

/**
 * Deployment substrates. `accepts` lists the formats the driver can deploy, preferred first: the
 * spec loader suggests the first one when an image offers none of them.
 */
export const TARGET_TYPES = [
  { name: 'qemu', description: 'QEMU/KVM on this machine or a host over SSH (TCG when KVM is absent)', accepts: ['qcow2', 'raw'] },
  { name: 'proxmox', description: 'Proxmox VE node over SSH (qm importdisk)', accepts: ['qcow2', 'raw', 'iso'] },
  { name: 'vsphere', description: 'VMware vCenter or ESXi through govc', accepts: ['vmdk', 'ova'] },
  { name: 'firecracker', description: 'Firecracker microVMs on a KVM host, local or over SSH', accepts: ['firecracker'] },
  { name: 'aws', description: 'Amazon EC2 instances from an imported AMI', accepts: ['ami'] },
  { name: 'azure', description: 'Azure VMs from a managed image', accepts: ['azure'] },
  { name: 'gcp', description: 'Google Compute Engine instances from an imported image', accepts: ['gce'] },
  { name: 'baremetal', description: 'Physical machines booted over the network or installed from media', accepts: ['pxe', 'iso', 'installer-media', 'raw'] },
  { name: 'hollow', description: 'Scale-testing driver: each node is a tiny local process, no VM', accepts: 'any' },
] as const satisfies readonly (CatalogEntry & { readonly accepts: AcceptedFormats })[];

/** Name of a target type, e.g. `proxmox`. */
export type TargetType = (typeof TARGET_TYPES)[number]['name'];

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

/** QEMU accelerators; `auto` picks KVM when /dev/kvm is usable and TCG otherwise. */
export const ACCELERATORS = [
  { name: 'auto', description: 'KVM when /dev/kvm is usable, TCG otherwise' },
  { name: 'kvm', description: 'hardware virtualisation; fails if /dev/kvm is missing' },
  { name: 'tcg', description: 'software emulation; slow but runs anywhere' },
] as const satisfies readonly CatalogEntry[];
export type Accelerator = (typeof ACCELERATORS)[number]['name'];

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

/** Output formats of an image that does not list any. */
export const DEFAULT_OUTPUTS: readonly OutputFormat[] = ['qcow2'];

/** The `apiVersion` and `kind` this loader understands. */
export const API_VERSION = 'kubedos.dev/v1alpha1';
export const KIND = 'Platform';

/** Names of a table's entries as a non-empty tuple, the shape `z.enum` wants. */
export function namesOf<T extends readonly { readonly name: string }[]>(table: T): readonly [T[number]['name'], ...T[number]['name'][]] {
  return table.map((entry) => entry.name) as unknown as readonly [T[number]['name'], ...T[number]['name'][]];
}

/** Formats a target type can deploy (`any` for drivers such as `hollow`). */
export function acceptedFormats(type: TargetType): AcceptedFormats {
  const entry: { readonly accepts: AcceptedFormats } | undefined = TARGET_TYPES.find((t) => t.name === type);
  return entry ? entry.accepts : 'any';
}

/** Type guard for output format names coming from untyped input. */
export function isOutputFormat(value: unknown): value is OutputFormat {
  return OUTPUT_FORMATS.some((f) => f.name === value);
}

/** Type guard for target type names coming from untyped input. */
export function isTargetType(value: unknown): value is TargetType {
  return TARGET_TYPES.some((t) => t.name === value);
}
