/**
 * The request-body checks the Azure and Compute Engine stand-ins make (test/support/api-shape.ts
 * with each API's shapes) can fail: a member the API does not define, a wrong type, a missing
 * required member or a value outside an enum is refused, as ARM and Google refuse it. The gcp
 * driver's own instance body (instanceBody, what it sends) passes; the e2e tests then run the
 * drivers' whole requests through the same checks.
 */
import { checkShape } from '../support/api-shape';
import { VIRTUAL_MACHINE } from '../support/azure-standin/shapes';
import { INSTANCE } from '../support/gce-standin/shapes';
import { gcp, type GcpTargetSpec } from '../../src/targets/gcp';
import { instanceBody } from '../../src/targets/gcp/driver';

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** A Linux VM from a managed image, in ARM's REST form (what @azure/arm-compute serializes). */
const VM = {
  location: 'westeurope',
  tags: { kubedos: 'node' },
  properties: {
    hardwareProfile: { vmSize: 'Standard_B2s' },
    storageProfile: { imageReference: { id: '/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/images/i' }, osDisk: { name: 'vm-osdisk', createOption: 'FromImage', caching: 'ReadWrite', deleteOption: 'Delete', managedDisk: { storageAccountType: 'StandardSSD_LRS' } } },
    osProfile: { computerName: 'web-0001', adminUsername: 'kubedos', customData: 'I2Nsb3VkLWNvbmZpZwo=', linuxConfiguration: { disablePasswordAuthentication: true, provisionVMAgent: false } },
    networkProfile: { networkInterfaces: [{ id: '/subscriptions/x/nic', properties: { primary: true, deleteOption: 'Delete' } }] },
    diagnosticsProfile: { bootDiagnostics: { enabled: true } },
  },
};

test('the ARM stand-in\'s VM shape accepts a VM body and refuses unknown members, wrong types, missing required members and values outside an enum', () => {
  expect(checkShape(VM, VIRTUAL_MACHINE)).toBeUndefined();
  const unknown = clone(VM) as Record<string, any>;
  unknown.properties.osProfile.customdata = 'x'; // ARM's member is customData
  expect(checkShape(unknown, VIRTUAL_MACHINE)).toMatchObject({ kind: 'unknown', path: 'properties.osProfile.customdata' });
  const flattened = { ...clone(VM), hardwareProfile: { vmSize: 'Standard_B2s' } }; // the SDK's model, not the wire form
  expect(checkShape(flattened, VIRTUAL_MACHINE)).toMatchObject({ kind: 'unknown', path: 'hardwareProfile' });
  const wrongType = clone(VM) as Record<string, any>;
  wrongType.properties.diagnosticsProfile.bootDiagnostics.enabled = 'true';
  expect(checkShape(wrongType, VIRTUAL_MACHINE)).toMatchObject({ kind: 'type', path: 'properties.diagnosticsProfile.bootDiagnostics.enabled' });
  const missing = clone(VM) as Record<string, any>;
  delete missing.properties.hardwareProfile;
  expect(checkShape(missing, VIRTUAL_MACHINE)).toMatchObject({ kind: 'required', path: 'properties.hardwareProfile' });
  const badEnum = clone(VM) as Record<string, any>;
  badEnum.properties.storageProfile.osDisk.createOption = 'fromImage';
  expect(checkShape(badEnum, VIRTUAL_MACHINE)).toMatchObject({ kind: 'enum', path: 'properties.storageProfile.osDisk.createOption' });
});

test('the gcp driver\'s instance body passes the Compute Engine stand-in\'s instance shape, which refuses what the API would', () => {
  const spec = gcp.schema.parse({ type: 'gcp', project: 'my-project', zone: 'europe-west4-a', bucket: 'kubedos-images', externalIp: true, subnetwork: 'nodes', diskSizeGb: 20 }) as GcpTargetSpec;
  const record = { kubedos: 1, nodeId: 'p-web-0001', labels: { platform: 'p', fleet: 'web', generation: 1, image: 'worker', imageDigest: 'e'.repeat(64) }, identity: { hostname: 'web-0001', machineId: '0'.repeat(32), hostKeyPublic: 'ssh-ed25519 AAAA', hostKeyFingerprint: 'SHA256:x' } };
  const body = JSON.parse(JSON.stringify(instanceBody(spec, { name: 'p-web-0001', sourceImage: 'projects/my-project/global/images/kubedos-worker-eeeeeeeeeeee', userData: '#cloud-config\n', record: record as never })));
  expect(checkShape(body, INSTANCE)).toBeUndefined();
  const unknown = clone(body);
  unknown.networkInterfaces[0].nic_type = 'GVNIC';
  expect(checkShape(unknown, INSTANCE)).toMatchObject({ kind: 'unknown', path: 'networkInterfaces[0].nic_type' });
  const badEnum = clone(body);
  badEnum.networkInterfaces[0].nicType = 'gvnic';
  expect(checkShape(badEnum, INSTANCE)).toMatchObject({ kind: 'enum' });
  const badInt64 = clone(body);
  badInt64.disks[0].initializeParams.diskSizeGb = '20GB';
  expect(checkShape(badInt64, INSTANCE)).toMatchObject({ kind: 'type', path: 'disks[0].initializeParams.diskSizeGb' });
  const missingKey = clone(body);
  delete missingKey.metadata.items[0].key;
  expect(checkShape(missingKey, INSTANCE)).toMatchObject({ kind: 'required', path: 'metadata.items[0].key' });
});
