/**
 * The Resource Manager request bodies the Azure stand-in accepts, written from Microsoft's REST
 * API reference (azure-rest-api-specs) for the versions the SDKs in package.json send:
 * Microsoft.Compute virtualMachines and images 2026-03-01 (@azure/arm-compute 24.1.0),
 * Microsoft.Compute disks 2025-01-02 (DiskRP, same SDK), Microsoft.Network networkInterfaces and
 * publicIPAddresses 2025-05-01 (@azure/arm-network 36.0.0). Members KubeDos does not use but the
 * API defines are 'any'; members the API does not define are refused.
 */
import type { Shape } from '../api-shape';

export const API_VERSIONS = {
  'Microsoft.Compute/virtualMachines': '2026-03-01',
  'Microsoft.Compute/images': '2026-03-01',
  'Microsoft.Compute/disks': '2025-01-02',
  'Microsoft.Network/networkInterfaces': '2025-05-01',
  'Microsoft.Network/publicIPAddresses': '2025-05-01',
} as const;

const str = 'string' as const;
const bool = 'boolean' as const;
const tags: Shape = { map: 'string' };
const subResource: Shape = { object: { id: str } };
const storageAccountType: Shape = { enum: ['Standard_LRS', 'Premium_LRS', 'StandardSSD_LRS', 'UltraSSD_LRS', 'Premium_ZRS', 'StandardSSD_ZRS', 'PremiumV2_LRS'] };

/** Microsoft.Compute/images (Image). */
export const IMAGE: Shape = {
  object: {
    location: str,
    tags,
    extendedLocation: 'any',
    properties: {
      object: {
        sourceVirtualMachine: subResource,
        storageProfile: {
          object: {
            osDisk: {
              object: {
                osType: { enum: ['Windows', 'Linux'] },
                osState: { enum: ['Generalized', 'Specialized'] },
                snapshot: subResource,
                managedDisk: subResource,
                blobUri: str,
                caching: { enum: ['None', 'ReadOnly', 'ReadWrite'] },
                diskSizeGB: 'integer',
                storageAccountType,
                diskEncryptionSet: 'any',
              },
              required: ['osType', 'osState'],
            },
            dataDisks: 'any',
            zoneResilient: bool,
          },
          required: ['osDisk'],
        },
        hyperVGeneration: { enum: ['V1', 'V2'] },
      },
      required: ['storageProfile'],
    },
  },
  required: ['location', 'properties'],
};

/** Microsoft.Compute/virtualMachines (VirtualMachine), the members a Linux VM from an image uses. */
export const VIRTUAL_MACHINE: Shape = {
  object: {
    location: str,
    tags,
    zones: { array: str },
    identity: 'any',
    plan: 'any',
    extendedLocation: 'any',
    placement: 'any',
    properties: {
      object: {
        hardwareProfile: { object: { vmSize: str, vmSizeProperties: 'any' }, required: ['vmSize'] },
        storageProfile: {
          object: {
            imageReference: { object: { id: str, publisher: str, offer: str, sku: str, version: str, sharedGalleryImageId: str, communityGalleryImageId: str } },
            osDisk: {
              object: {
                osType: { enum: ['Windows', 'Linux'] },
                name: str,
                caching: { enum: ['None', 'ReadOnly', 'ReadWrite'] },
                writeAcceleratorEnabled: bool,
                diffDiskSettings: 'any',
                createOption: { enum: ['FromImage', 'Empty', 'Attach', 'Copy', 'Restore'] },
                diskSizeGB: 'integer',
                managedDisk: { object: { id: str, storageAccountType, diskEncryptionSet: 'any', securityProfile: 'any' } },
                deleteOption: { enum: ['Delete', 'Detach'] },
                encryptionSettings: 'any',
                image: 'any',
                vhd: 'any',
              },
              required: ['createOption'],
            },
            dataDisks: 'any',
            diskControllerType: { enum: ['SCSI', 'NVMe'] },
            alignRegionalDisksToVMZone: bool,
          },
        },
        osProfile: {
          object: {
            computerName: str,
            adminUsername: str,
            adminPassword: str,
            customData: str,
            linuxConfiguration: {
              object: {
                disablePasswordAuthentication: bool,
                ssh: { object: { publicKeys: { array: { object: { path: str, keyData: str } } } } },
                provisionVMAgent: bool,
                patchSettings: 'any',
                enableVMAgentPlatformUpdates: bool,
              },
            },
            windowsConfiguration: 'any',
            secrets: 'any',
            allowExtensionOperations: bool,
            requireGuestProvisionSignal: bool,
          },
          required: ['computerName', 'adminUsername'],
        },
        networkProfile: {
          object: {
            networkInterfaces: { array: { object: { id: str, properties: { object: { primary: bool, deleteOption: { enum: ['Delete', 'Detach'] } } } } } },
            networkApiVersion: str,
            networkInterfaceConfigurations: 'any',
          },
        },
        diagnosticsProfile: { object: { bootDiagnostics: { object: { enabled: bool, storageUri: str } } } },
        securityProfile: 'any',
        additionalCapabilities: 'any',
        availabilitySet: subResource,
        virtualMachineScaleSet: subResource,
        proximityPlacementGroup: subResource,
        priority: { enum: ['Regular', 'Low', 'Spot'] },
        evictionPolicy: { enum: ['Deallocate', 'Delete'] },
        billingProfile: 'any',
        host: subResource,
        hostGroup: subResource,
        licenseType: str,
        extensionsTimeBudget: str,
        platformFaultDomain: 'integer',
        scheduledEventsProfile: 'any',
        scheduledEventsPolicy: 'any',
        userData: str,
        capacityReservation: 'any',
        applicationProfile: 'any',
      },
      required: ['hardwareProfile', 'storageProfile', 'networkProfile'],
    },
  },
  required: ['location', 'properties'],
};

/** Microsoft.Compute/disks PATCH (DiskUpdate). */
export const DISK_UPDATE: Shape = { object: { tags, sku: 'any', properties: 'any' } };

/** Microsoft.Network/networkInterfaces (NetworkInterface). */
export const NETWORK_INTERFACE: Shape = {
  object: {
    id: str,
    location: str,
    tags,
    extendedLocation: 'any',
    properties: {
      object: {
        ipConfigurations: {
          array: {
            object: {
              id: str,
              name: str,
              type: str,
              properties: {
                object: {
                  primary: bool,
                  // A Subnet / PublicIPAddress resource by reference (the SDK may send its empty members).
                  subnet: { object: { id: str, name: str, type: str, properties: 'any' } },
                  privateIPAllocationMethod: { enum: ['Static', 'Dynamic'] },
                  privateIPAddress: str,
                  privateIPAddressVersion: { enum: ['IPv4', 'IPv6'] },
                  publicIPAddress: { object: { id: str, name: str, type: str, location: str, tags, sku: 'any', zones: 'any', properties: 'any' } },
                  applicationSecurityGroups: 'any',
                  loadBalancerBackendAddressPools: 'any',
                  gatewayLoadBalancer: 'any',
                },
              },
            },
            required: ['name'],
          },
        },
        networkSecurityGroup: subResource,
        dnsSettings: 'any',
        enableAcceleratedNetworking: bool,
        enableIPForwarding: bool,
        disableTcpStateTracking: bool,
        nicType: { enum: ['Standard', 'Elastic'] },
        auxiliaryMode: 'any',
        auxiliarySku: 'any',
        workloadType: str,
        migrationPhase: 'any',
      },
      required: ['ipConfigurations'],
    },
  },
  required: ['location', 'properties'],
};

/** Microsoft.Network/publicIPAddresses (PublicIPAddress). */
export const PUBLIC_IP_ADDRESS: Shape = {
  object: {
    id: str,
    location: str,
    tags,
    zones: { array: str },
    extendedLocation: 'any',
    sku: { object: { name: { enum: ['Basic', 'Standard', 'StandardV2'] }, tier: { enum: ['Regional', 'Global'] } } },
    properties: {
      object: {
        publicIPAllocationMethod: { enum: ['Static', 'Dynamic'] },
        publicIPAddressVersion: { enum: ['IPv4', 'IPv6'] },
        idleTimeoutInMinutes: 'integer',
        dnsSettings: 'any',
        ddosSettings: 'any',
        ipTags: 'any',
        deleteOption: { enum: ['Delete', 'Detach'] },
      },
    },
  },
  required: ['location'],
};
