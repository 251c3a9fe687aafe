/**
 * The Compute Engine request bodies the GCE stand-in accepts, written from the compute v1
 * Discovery document (https://compute.googleapis.com/discovery/v1/apis/compute/v1/rest: Instance,
 * AttachedDisk, AttachedDiskInitializeParams, NetworkInterface, AccessConfig, Scheduling,
 * ShieldedInstanceConfig, Metadata, Image, RawDisk, GuestOsFeature), in the JSON @google-cloud/compute
 * sends with `fallback: 'rest'`. Members KubeDos does not use but the API defines are 'any';
 * members the API does not define are refused ("Unknown name"). int64 fields are decimal strings.
 */
import type { Shape } from '../api-shape';

const str = 'string' as const;
const bool = 'boolean' as const;
const labels: Shape = { map: 'string' };

export const GUEST_OS_FEATURES = [
  'FEATURE_TYPE_UNSPECIFIED', 'VIRTIO_SCSI_MULTIQUEUE', 'WINDOWS', 'MULTI_IP_SUBNET', 'UEFI_COMPATIBLE', 'SECURE_BOOT', 'GVNIC', 'SEV_CAPABLE',
  'BARE_METAL_LINUX_COMPATIBLE', 'SUSPEND_RESUME_COMPATIBLE', 'SEV_LIVE_MIGRATABLE', 'SEV_SNP_CAPABLE', 'TDX_CAPABLE', 'IDPF', 'SEV_LIVE_MIGRATABLE_V2',
] as const;

const guestOsFeature: Shape = { object: { type: { enum: GUEST_OS_FEATURES } } };

export const IMAGE: Shape = {
  object: {
    name: str,
    description: str,
    family: str,
    labels,
    rawDisk: { object: { source: str, containerType: { enum: ['TAR'] }, sha1Checksum: str } },
    guestOsFeatures: { array: guestOsFeature },
    architecture: { enum: ['ARCHITECTURE_UNSPECIFIED', 'X86_64', 'ARM64'] },
    diskSizeGb: 'int64',
    licenses: { array: str },
    storageLocations: { array: str },
    sourceDisk: str,
    sourceImage: str,
    sourceSnapshot: str,
    shieldedInstanceInitialState: 'any',
    imageEncryptionKey: 'any',
  },
  required: ['name'],
};

const initializeParams: Shape = {
  object: {
    diskName: str,
    sourceImage: str,
    diskSizeGb: 'int64',
    diskType: str,
    labels,
    architecture: { enum: ['ARCHITECTURE_UNSPECIFIED', 'X86_64', 'ARM64'] },
    description: str,
    provisionedIops: 'int64',
    provisionedThroughput: 'int64',
    resourcePolicies: { array: str },
    sourceImageEncryptionKey: 'any',
    sourceSnapshot: str,
    onUpdateAction: str,
    enableConfidentialCompute: bool,
    storagePool: str,
    resourceManagerTags: 'any',
    licenses: { array: str },
    replicaZones: { array: str },
  },
};

export const INSTANCE: Shape = {
  object: {
    name: str,
    description: str,
    machineType: str,
    labels,
    metadata: { object: { items: { array: { object: { key: str, value: str }, required: ['key'] } }, fingerprint: str, kind: str } },
    disks: {
      array: {
        object: {
          boot: bool,
          autoDelete: bool,
          type: { enum: ['PERSISTENT', 'SCRATCH'] },
          mode: { enum: ['READ_WRITE', 'READ_ONLY'] },
          deviceName: str,
          source: str,
          interface: { enum: ['SCSI', 'NVME'] },
          initializeParams,
          diskEncryptionKey: 'any',
          guestOsFeatures: { array: guestOsFeature },
          diskSizeGb: 'int64',
          savedState: str,
        },
      },
    },
    networkInterfaces: {
      array: {
        object: {
          network: str,
          subnetwork: str,
          networkIP: str,
          nicType: { enum: ['UNSPECIFIED_NIC_TYPE', 'VIRTIO_NET', 'GVNIC', 'IDPF', 'MRDMA', 'IRDMA'] },
          stackType: { enum: ['IPV4_ONLY', 'IPV4_IPV6', 'IPV6_ONLY'] },
          accessConfigs: {
            array: {
              object: {
                type: { enum: ['ONE_TO_ONE_NAT', 'DIRECT_IPV6'] },
                name: str,
                natIP: str,
                networkTier: { enum: ['PREMIUM', 'STANDARD', 'FIXED_STANDARD', 'STANDARD_OVERRIDES_FIXED_STANDARD'] },
                setPublicPtr: bool,
                publicPtrDomainName: str,
              },
            },
          },
          aliasIpRanges: 'any',
          queueCount: 'integer',
          ipv6AccessConfigs: 'any',
          networkAttachment: str,
        },
      },
    },
    shieldedInstanceConfig: { object: { enableSecureBoot: bool, enableVtpm: bool, enableIntegrityMonitoring: bool } },
    scheduling: {
      object: {
        automaticRestart: bool,
        onHostMaintenance: { enum: ['MIGRATE', 'TERMINATE'] },
        preemptible: bool,
        provisioningModel: { enum: ['STANDARD', 'SPOT', 'FLEX_START', 'RESERVATION_BOUND'] },
        instanceTerminationAction: { enum: ['STOP', 'DELETE'] },
        nodeAffinities: 'any',
        minNodeCpus: 'integer',
        maxRunDuration: 'any',
        terminationTime: str,
        localSsdRecoveryTimeout: 'any',
        availabilityDomain: 'integer',
      },
    },
    serviceAccounts: { array: { object: { email: str, scopes: { array: str } } } },
    tags: { object: { items: { array: str }, fingerprint: str } },
    canIpForward: bool,
    deletionProtection: bool,
    minCpuPlatform: str,
    guestAccelerators: 'any',
    confidentialInstanceConfig: 'any',
    advancedMachineFeatures: 'any',
    displayDevice: 'any',
    reservationAffinity: 'any',
    resourcePolicies: { array: str },
    hostname: str,
    keyRevocationActionType: str,
    networkPerformanceConfig: 'any',
    params: 'any',
  },
  required: ['name'],
};
