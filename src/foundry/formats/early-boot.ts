/**
 * Kernel modules the machines of each artifact family need from the initramfs, before the root
 * filesystem is mounted: the disk controllers they boot from (and, for clouds whose first boot
 * needs it, the network). Each format's descriptor names its family's list (`earlyBoot`); the
 * rootfs layer's initramfs (MODULES=list) carries their union, so one layer serves every format,
 * a build checks that each requested format's modules made it in, and the initramfs holds no
 * NFS-root network stack or drivers for hardware that no KubeDos target has.
 */

/** The root filesystem of every disk artifact. */
export const ROOT_FS_MODULES = ['ext4'] as const;

/** Disks of a KVM guest (QEMU, Proxmox, libvirt): virtio-blk/scsi, emulated SATA, NVMe. */
export const KVM_DISK_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'ahci', 'sd_mod', 'nvme'] as const;

/**
 * Physical servers: SATA/NVMe, the common RAID and SAS HBAs (Broadcom/LSI, Microchip, HPE,
 * Adaptec), USB and SD/eMMC boot media, and a USB keyboard for the emergency shell. Hardware
 * beyond these needs `base.initramfsModules`.
 */
export const SERVER_DISK_MODULES = [
  'ahci', 'ata_piix', 'sd_mod', 'sr_mod', 'nvme',
  'megaraid_sas', 'mpt3sas', 'smartpqi', 'hpsa', 'aacraid',
  'usb_storage', 'uas', 'xhci_pci', 'ehci_pci', 'mmc_block', 'sdhci_pci',
  'usbhid', 'hid_generic',
] as const;

/** VMware: the LSI Logic controller of the OVA, PVSCSI, SATA and NVMe. */
export const VMWARE_DISK_MODULES = ['mptspi', 'vmw_pvscsi', 'ahci', 'sd_mod', 'nvme'] as const;

/** A disk (or medium) that boots KVM guests and physical servers alike: raw, iso, pxe, installer-media. */
export const VM_OR_SERVER_MODULES = [...ROOT_FS_MODULES, ...KVM_DISK_MODULES, ...SERVER_DISK_MODULES] as const;

/** A disk for VMware guests: vmdk, ova. */
export const VMWARE_GUEST_MODULES = [...ROOT_FS_MODULES, ...VMWARE_DISK_MODULES] as const;

/** What one format's machines need early, and why (the build's error names the purpose). */
export interface EarlyBoot {
  readonly modules: readonly string[];
  readonly purpose: string;
}

/** Module names as initramfs-tools' module lists take them. */
export const MODULE_NAME = /^[a-z0-9][a-z0-9_-]*$/;
