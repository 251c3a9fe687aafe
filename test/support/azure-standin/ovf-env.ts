/**
 * ovf-env.xml as Azure writes it on a VM's provisioning media (the LinuxProvisioningConfigurationSet
 * of the OVF environment: host name, admin user, its SSH keys, and the VM's custom data in base64).
 * The shape follows what walinuxagent and cloud-init's Azure datasource parse.
 */
export interface OvfEnvInput {
  hostname: string;
  adminUsername: string;
  sshPublicKeys: readonly string[];
  /** The VM's osProfile.customData as given to Resource Manager (already base64). */
  customDataBase64?: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function ovfEnvXml(o: OvfEnvInput): string {
  const keys = o.sshPublicKeys
    .map((k) => `<PublicKey><Fingerprint>${'0'.repeat(40)}</Fingerprint><Path>/home/${esc(o.adminUsername)}/.ssh/authorized_keys</Path><Value>${esc(k)}</Value></PublicKey>`)
    .join('');
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">',
    '<wa:ProvisioningSection><wa:Version>1.0</wa:Version>',
    '<LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">',
    '<ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>',
    `<HostName>${esc(o.hostname)}</HostName><UserName>${esc(o.adminUsername)}</UserName><UserPassword i:nil="true"/>`,
    '<DisableSshPasswordAuthentication>true</DisableSshPasswordAuthentication>',
    `<SSH><PublicKeys>${keys}</PublicKeys><KeyPairs/></SSH>`,
    o.customDataBase64 ? `<CustomData>${o.customDataBase64}</CustomData>` : '',
    '</LinuxProvisioningConfigurationSet></wa:ProvisioningSection>',
    '<wa:PlatformSettingsSection><wa:Version>1.0</wa:Version><wa:PlatformSettings><wa:KmsServerHostname>kms.core.windows.net</wa:KmsServerHostname><wa:ProvisionGuestAgent>false</wa:ProvisionGuestAgent><wa:GuestAgentPackageName i:nil="true"/><wa:UseAVMA>false</wa:UseAVMA><wa:PreprovisionedVm>false</wa:PreprovisionedVm></wa:PlatformSettings></wa:PlatformSettingsSection>',
    '</Environment>',
    '',
  ].join('\n');
}
