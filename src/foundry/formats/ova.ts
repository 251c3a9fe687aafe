import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildContext } from '../context';
import { sha256File } from '../lock';
import type { ImagePlan } from '../plan';
import { writeTar } from '../tar';
import { publishArtifact, type OutputFormat } from './format';
import { VMWARE_GUEST_MODULES } from './early-boot';
import { streamOptimizedVmdk } from './vmdk';

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** OVF 1.0 descriptor: 2 vCPUs, 2 GiB, one streamOptimized disk on an LSI Logic controller, EFI firmware. */
export function ovfDescriptor(image: ImagePlan, vmdkName: string, vmdkSize: number): string {
  const name = xml(image.name);
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="${xml(vmdkName)}" ovf:id="file1" ovf:size="${vmdkSize}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="${image.diskSizeBytes}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="${name}">
    <Info>A KubeDos image (role ${xml(image.role)})</Info>
    <Name>${name}</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>${name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>2 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}

/**
 * OVA: a tar of the OVF descriptor (first, as the OVF specification requires), the .mf manifest
 * (SHA256 of the descriptor and the disk) and the streamOptimized vmdk; fixed mtimes, root owner.
 */
export const ova: OutputFormat<'ova'> = {
  name: 'ova',
  description: 'OVF appliance (descriptor, SHA256 manifest, streamOptimized vmdk) for vSphere import',
  consumes: 'disk',
  earlyBoot: { modules: VMWARE_GUEST_MODULES, purpose: 'ova: VMware guests (LSI Logic, PVSCSI, SATA, NVMe disks)' },
  tools: ['qemu-img'],
  fileName: (image) => `${image.name}.ova`,
  produce: async (ctx: BuildContext) => {
    const image = ctx.plan.image;
    const vmdkFile = await streamOptimizedVmdk(ctx);
    const dir = path.join(ctx.workDir, 'ova');
    await fs.mkdir(dir, { recursive: true });
    const vmdkName = `${image.name}-disk1.vmdk`;
    const ovfName = `${image.name}.ovf`;
    const mfName = `${image.name}.mf`;
    const ovfPath = path.join(dir, ovfName);
    await fs.writeFile(ovfPath, ovfDescriptor(image, vmdkName, (await fs.stat(vmdkFile)).size));
    const mfPath = path.join(dir, mfName);
    await fs.writeFile(mfPath, `SHA256(${ovfName})= ${await sha256File(ovfPath)}\nSHA256(${vmdkName})= ${await sha256File(vmdkFile)}\n`);
    const entries = [
      { name: ovfName, file: ovfPath },
      { name: mfName, file: mfPath },
      { name: vmdkName, file: vmdkFile },
    ];
    return [await publishArtifact(ctx, 'ova', ova.fileName(image), (tmp) => writeTar(tmp, entries, ctx.plan.sourceDateEpoch))];
  },
};
