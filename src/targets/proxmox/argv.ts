/**
 * The `qm` and `pvesm` command lines of the Proxmox driver: argv arrays only (the SSH layer
 * quotes them), nothing run here. See ./driver.ts for what each command is used for.
 */

export interface QmCreateOptions {
  vmid: number;
  name: string;
  memoryMiB: number;
  cores: number;
  /** Storage for the disks and the cloud-init drive. */
  storage: string;
  bridge: string;
  /** Absolute path of the prepared image on the host. */
  image: string;
  tags: string;
  description: string;
  /** SMBIOS UUID (the machine-id). */
  uuid: string;
  /** Volume ids of the NoCloud snippets. */
  cloudInit: { user: string; meta: string };
}

/** The one `qm create` of a node (see ./driver.ts's file comment for what each option is for). */
export function qmCreateArgv(o: QmCreateOptions): string[] {
  return [
    'qm', 'create', String(o.vmid),
    '--name', o.name,
    '--tags', o.tags,
    '--description', o.description,
    '--ostype', 'l26',
    '--machine', 'q35',
    '--bios', 'ovmf',
    // The size of an EFI vars disk is ignored (the 4 MiB OVMF template is copied); no Secure Boot keys.
    '--efidisk0', `${o.storage}:1,efitype=4m,pre-enrolled-keys=0`,
    '--cores', String(o.cores),
    '--memory', String(o.memoryMiB),
    '--scsihw', 'virtio-scsi-pci',
    '--scsi0', `${o.storage}:0,import-from=${o.image}`,
    '--boot', 'order=scsi0',
    '--net0', `virtio,bridge=${o.bridge}`,
    '--serial0', 'socket',
    '--vga', 'serial0',
    '--agent', 'enabled=1',
    '--smbios1', `uuid=${o.uuid}`,
    '--ide2', `${o.storage}:cloudinit`,
    '--citype', 'nocloud',
    '--cicustom', `user=${o.cloudInit.user},meta=${o.cloudInit.meta}`,
    '--ipconfig0', 'ip=dhcp',
  ];
}

export function qmDestroyArgv(vmid: number, skiplock: boolean): string[] {
  return ['qm', 'destroy', String(vmid), '--purge', '1', '--destroy-unreferenced-disks', '1', ...(skiplock ? ['--skiplock', '1'] : [])];
}

export function qmStopArgv(vmid: number, skiplock: boolean): string[] {
  return ['qm', 'stop', String(vmid), ...(skiplock ? ['--skiplock', '1'] : [])];
}

export function qmStartArgv(vmid: number): string[] {
  return ['qm', 'start', String(vmid)];
}

/** Every VM of this cluster node (parseQmList reads the output). */
export function qmListArgv(): string[] {
  return ['qm', 'list'];
}

/** A VM's configuration (parseQmConfig reads the output). */
export function qmConfigArgv(vmid: number): string[] {
  return ['qm', 'config', String(vmid)];
}

/** A VM's state (parseQmStatus reads the output). */
export function qmStatusArgv(vmid: number): string[] {
  return ['qm', 'status', String(vmid)];
}

/** The guest's interfaces through the QEMU guest agent (guestIpv4 reads the output). */
export function qmGuestInterfacesArgv(vmid: number): string[] {
  return ['qm', 'guest', 'cmd', String(vmid), 'network-get-interfaces'];
}

/** The storages that can hold `content` (parsePvesmStatus reads the output). */
export function pvesmStatusArgv(content: 'images' | 'snippets'): string[] {
  return ['pvesm', 'status', '--content', content];
}

/** The file path of a volume, e.g. `local:snippets/x.yaml`. */
export function pvesmPathArgv(volume: string): string[] {
  return ['pvesm', 'path', volume];
}
