/** The `azure` target type: Azure VMs from a managed image made of the image's fixed VHD. */
import { z } from 'zod';
import { show } from '../../platform/show';
import type { DeepReadonly } from '../../platform/types';
import { defineTarget, type DriverFactory } from '../descriptor';

// Azure's own naming rules (Microsoft.Resources / Microsoft.Storage), so a bad name is refused at
// `validate` rather than by Resource Manager halfway through a rollout.
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const subscriptionId = z.string().regex(GUID, {
  error: (iss) => `invalid Azure subscription id ${show(iss.input)}: a GUID such as 00000000-0000-0000-0000-000000000000 (az account show --query id)`,
});
/** 1-90 letters, digits, '_', '-', '.', '(' and ')', not ending with '.'. */
const resourceGroup = z.string().regex(/^[-\w.()]{0,89}[-\w()]$/, {
  error: (iss) => `invalid resource group name ${show(iss.input)}: 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending with '.'`,
});
const location = z.string().regex(/^[a-z][a-z0-9]{1,39}$/, {
  error: (iss) => `invalid Azure location ${show(iss.input)}: a region name such as westeurope or eastus2 (az account list-locations -o table)`,
});
const storageAccount = z.string().regex(/^[a-z0-9]{3,24}$/, {
  error: (iss) => `invalid storage account name ${show(iss.input)}: 3-24 lowercase letters and digits`,
});
/** 3-63 lowercase letters, digits and single '-', starting and ending with a letter or digit. */
const container = z.string().regex(/^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/, {
  error: (iss) => `invalid blob container name ${show(iss.input)}: 3-63 lowercase letters, digits and single '-', e.g. kubedos-images`,
});
const subnetId = z
  .string()
  .regex(/^\/subscriptions\/[0-9a-fA-F-]{36}\/resourceGroups\/[-\w.()]+\/providers\/Microsoft\.Network\/virtualNetworks\/[-\w.]+\/subnets\/[-\w.]+$/i, {
    error: (iss) =>
      `invalid subnet ${show(iss.input)}: the subnet's resource id, /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet> (az network vnet subnet show … --query id)`,
  });
const vmSize = z.string().regex(/^(Standard|Basic)_[A-Za-z0-9_]+$/, {
  error: (iss) => `invalid VM size ${show(iss.input)}: an Azure size name such as Standard_B2s or Standard_D2s_v5 (az vm list-sizes -l <location>)`,
});
/** Linux admin user names Azure accepts (it refuses a list of reserved ones, e.g. root, admin). */
const adminUsername = z
  .string()
  .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: (iss) => `invalid admin user name ${show(iss.input)}: a Linux user name such as kubedos` })
  .refine((u) => !['root', 'admin', 'administrator', 'user', 'guest', 'test', 'adm', 'sys'].includes(u), {
    error: (iss) => `${show(iss.input)} is a user name Azure reserves; choose another, e.g. kubedos`,
  });

export const OS_DISK_TYPES = ['Standard_LRS', 'StandardSSD_LRS', 'Premium_LRS', 'StandardSSD_ZRS', 'Premium_ZRS'] as const;

const schema = z
  .strictObject({
    type: z.literal('azure'),
    subscription: subscriptionId.describe('Subscription id (GUID)'),
    resourceGroup: resourceGroup.describe('Resource group for the images, VMs, NICs and disks KubeDos makes (it must exist)'),
    location: location.describe('Azure region, e.g. westeurope'),
    storage: z
      .strictObject({
        account: storageAccount.describe('Storage account the VHD is uploaded to (in the same region)'),
        container: container.default('kubedos-images').describe('Blob container for the VHDs (created when missing)'),
      })
      .describe('Where the fixed VHD is uploaded as a page blob'),
    subnet: subnetId.describe("Resource id of the subnet the nodes' NICs join"),
    vmSize: vmSize.default('Standard_B2s').describe('VM size of every node'),
    osDiskType: z
      .enum(OS_DISK_TYPES, { error: (iss) => `unknown OS disk type ${show(iss.input)}; expected one of ${OS_DISK_TYPES.join(', ')}` })
      .default('StandardSSD_LRS')
      .describe('Managed disk type of the OS disk'),
    osDiskSizeGiB: z.int().min(1).max(4095).optional().describe("OS disk size in GiB; default: the image's size"),
    publicIp: z.boolean().default(false).describe('Give each node a static public IP (Standard SKU); otherwise it is reached on its private address'),
    adminUsername: adminUsername.default('kubedos').describe("The admin user Azure requires in a VM's OS profile (the fleet's authorized keys are given to it; the image's own reader ignores it)"),
  })
  .describe('Microsoft Azure');

/** A parsed `azure` target. */
export type AzureTargetSpec = DeepReadonly<z.output<typeof schema>>;

export const azure = defineTarget({
  type: 'azure',
  description: 'Microsoft Azure VMs from a managed image (page-blob VHD upload, Resource Manager)',
  accepts: ['azure'],
  pool: 'cloud',
  tools: [],
  schema,
  load: async (): Promise<DriverFactory<AzureTargetSpec>> => {
    const { AzureDriver } = await import('./driver');
    return (name, spec, env) => new AzureDriver(name, spec, env);
  },
});
