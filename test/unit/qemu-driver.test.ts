/**
 * The QEMU driver's pure parts: the VM and clone argv (one argv for local and remote hosts), the
 * identity-derived values (SMBIOS UUID, MAC), the console readiness parse, the registry entry.
 */
import { qemuImgCreateOverlayArgv } from '../../src/foundry/tools/qemu-img';
import { qemuOptValue, qemuVmArgv, type QemuVmArgs } from '../../src/foundry/tools/qemu-system';
import { createDriver, supportedTargetTypes } from '../../src/targets';
import { consoleReady, machineIdUuid } from '../../src/targets/identity';
import { nodeMac, QemuDriver } from '../../src/targets/qemu/driver';
import type { TargetSpec } from '../../src/platform/types';

const base: QemuVmArgs = {
  name: 'p-w-0001',
  accel: 'tcg',
  cpus: 2,
  memoryMiB: 1024,
  ovmfCode: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  ovmfVars: '/s/nodes/p-w-0001/OVMF_VARS.fd',
  disk: '/s/nodes/p-w-0001/disk.qcow2',
  seed: '/s/nodes/p-w-0001/seed.qcow2',
  uuid: '6070e08f-09e8-8e6c-6474-c0908b97a9c9',
  network: { type: 'user', forwards: [{ bind: '127.0.0.1', hostPort: 40022, guestPort: 22 }] },
  serialFile: '/s/nodes/p-w-0001/console.log',
  qmpSocket: '/s/nodes/p-w-0001/qmp.sock',
  pidFile: '/s/nodes/p-w-0001/qemu.pid',
  daemonize: true,
};

test('VM argv: OVMF, virtio disk and read-only seed, SMBIOS uuid, hostfwd, console file, QMP, pid file, daemonized', () => {
  expect(qemuVmArgv(base)).toEqual([
    'qemu-system-x86_64', '-name', 'guest=p-w-0001', '-machine', 'q35', '-accel', 'tcg,thread=multi', '-cpu', 'max',
    '-smp', '2', '-m', '1024', '-nodefaults', '-no-user-config', '-display', 'none',
    '-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
    '-drive', 'if=pflash,format=raw,unit=1,file=/s/nodes/p-w-0001/OVMF_VARS.fd',
    '-drive', 'if=virtio,format=qcow2,file=/s/nodes/p-w-0001/disk.qcow2',
    '-drive', 'if=virtio,format=qcow2,readonly=on,file=/s/nodes/p-w-0001/seed.qcow2',
    '-uuid', '6070e08f-09e8-8e6c-6474-c0908b97a9c9',
    '-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22', '-device', 'virtio-net-pci,netdev=net0',
    '-chardev', 'file,id=console,path=/s/nodes/p-w-0001/console.log', '-serial', 'chardev:console',
    '-chardev', 'socket,id=qmp,path=/s/nodes/p-w-0001/qmp.sock,server=on,wait=off', '-mon', 'chardev=qmp,mode=control',
    '-pidfile', '/s/nodes/p-w-0001/qemu.pid', '-daemonize',
  ]);
});

test('VM argv: KVM uses the host CPU; a bridge gets a tap with the node MAC; every remote bind address works', () => {
  const kvm = qemuVmArgv({ ...base, accel: 'kvm', network: { type: 'bridge', bridge: 'br0', mac: '52:54:00:aa:bb:cc' } });
  expect(kvm.slice(kvm.indexOf('-accel'), kvm.indexOf('-accel') + 4)).toEqual(['-accel', 'kvm', '-cpu', 'host']);
  expect(kvm).toContain('bridge,id=net0,br=br0');
  expect(kvm).toContain('virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc');
  const remote = qemuVmArgv({ ...base, network: { type: 'user', forwards: [{ bind: '', hostPort: 40022, guestPort: 22 }] } });
  expect(remote).toContain('user,id=net0,hostfwd=tcp::40022-:22');
});

test('paths with commas cannot inject QEMU options', () => {
  expect(qemuOptValue('/a,b/c')).toBe('/a,,b/c');
  const argv = qemuVmArgv({ ...base, disk: '/x,file=/etc/shadow/disk.qcow2', serialFile: '/y,path=/etc/passwd' });
  expect(argv).toContain('if=virtio,format=qcow2,file=/x,,file=/etc/shadow/disk.qcow2');
  expect(argv).toContain('file,id=console,path=/y,,path=/etc/passwd');
});

test('linked clone argv', () => {
  expect(qemuImgCreateOverlayArgv('/s/n/disk.qcow2', '/s/images/abc.qcow2')).toEqual(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', '/s/images/abc.qcow2', '/s/n/disk.qcow2']);
});

test('machine-id as SMBIOS UUID, node MAC', () => {
  expect(machineIdUuid('6070e08f09e88e6c6474c0908b97a9c9')).toBe('6070e08f-09e8-8e6c-6474-c0908b97a9c9');
  expect(() => machineIdUuid('nope')).toThrow(/machine-id/);
  expect(nodeMac('p-w-0001')).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
  expect(nodeMac('p-w-0001')).toBe(nodeMac('p-w-0001'));
  expect(nodeMac('p-w-0001')).not.toBe(nodeMac('p-w-0002'));
});

test('readiness is the exact console line for the node hostname, with or without a kernel timestamp', () => {
  expect(consoleReady('boot...\r\nkubedos: ready worker-0001\r\n', 'worker-0001')).toBe(true);
  expect(consoleReady('[   73.1] kubedos: ready worker-0001\n', 'worker-0001')).toBe(true);
  expect(consoleReady('kubedos: ready worker-00012\n', 'worker-0001')).toBe(false);
  expect(consoleReady('kubedos: ready kubedos-test-0\n', 'worker-0001')).toBe(false);
  expect(consoleReady('', 'worker-0001')).toBe(false);
});

test('the registry makes a QEMU driver for type qemu', async () => {
  expect(supportedTargetTypes()).toContain('qemu');
  const spec = { type: 'qemu', host: 'local', accel: 'tcg', memory: 1 << 30, cpus: 2, network: 'user' } as TargetSpec;
  const driver = await createDriver('local-qemu', spec, { stateDir: '/nonexistent' });
  expect(driver).toBeInstanceOf(QemuDriver);
});
