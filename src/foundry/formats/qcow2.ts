import { qemuImgConvert } from '../tools/qemu-img';
import { publishArtifact, type OutputFormat } from './format';
import { ROOT_FS_MODULES, KVM_DISK_MODULES } from './early-boot';

/** QEMU copy-on-write v3 (deterministic with qemu-img 7.2: no timestamps, no random ids). */
export const qcow2: OutputFormat<'qcow2'> = {
  name: 'qcow2',
  description: 'QEMU copy-on-write v3 disk image; QEMU/KVM, Proxmox, OpenStack',
  consumes: 'disk',
  earlyBoot: { modules: [...ROOT_FS_MODULES, ...KVM_DISK_MODULES], purpose: 'qcow2: KVM guests (virtio, SATA, NVMe disks)' },
  tools: ['qemu-img'],
  fileName: (image) => `${image.name}.qcow2`,
  produce: async (ctx) => [
    await publishArtifact(ctx, 'qcow2', qcow2.fileName(ctx.plan.image), (tmp) =>
      qemuImgConvert({ source: ctx.rawDisk!, sourceFormat: 'raw', dest: tmp, destFormat: 'qcow2', options: { compat: '1.1' }, cache: 'unsafe' }, { signal: ctx.options.signal }).then(() => undefined),
    ),
  ],
};
