/**
 * The bare-metal target without machines: its spec (the example inventory, defaults, every
 * refusal with its message), the format a target deploys by its provisioning method, the media
 * the driver makes (installer menus, the node's iPXE script), dnsmasq's command line, and the
 * boot server's HTTP behaviour (tokens, MACs, ranges) on loopback.
 */
import path from 'node:path';
import { stringify } from 'yaml';
import { fleetInputFromSpec } from '../../src/cli/fleets';
import { grubConfig, isoBootEntries, isolinuxConfig } from '../../src/foundry/formats/iso';
import { loadSpec, parseSpec } from '../../src/platform/load';
import { SpecError } from '../../src/errors';
import { IPXE_ENTRY, parseRange, serveBoot } from '../../src/targets/baremetal/boot-server';
import { dnsmasqArgv, parseLeases } from '../../src/targets/baremetal/dhcp';
import { chainScript, installGrub, installIsolinux, nodeIpxeScript, pxeNodeArgs } from '../../src/targets/baremetal/media';

const ROOT = path.resolve(__dirname, '..', '..');
const FP = '3F:8A:12:9C:55:E0:7B:41:C2:6D:90:1E:AB:34:F7:08:6C:D5:29:B1:4E:73:0A:9F:C8:52:16:E4:BD:07:93:6A';

function doc(target: Record<string, unknown>, outputs = ['iso', 'pxe'], replicas = 1) {
  return {
    apiVersion: 'kubedos.dev/v1alpha1',
    kind: 'Platform',
    metadata: { name: 'p' },
    base: { sourceDateEpoch: 1735689600 },
    images: { node: { disk: { size: '2GiB' }, outputs } },
    targets: { rack: target },
    fleets: { web: { image: 'node', target: 'rack', replicas } },
  };
}

const machine = (over: Record<string, unknown> = {}) => ({ name: 'm1', bmc: 'https://10.0.10.7', mac: '3C-EC-EF-10-07-01', address: '10.0.0.7', ...over });
const target = (over: Record<string, unknown> = {}) => ({
  type: 'baremetal',
  credentials: { username: 'kubedos', passwordEnv: 'BMC_PASSWORD' },
  tls: { fingerprint: FP.replace(/:/g, '').toLowerCase() },
  bootServer: { url: 'http://10.0.0.5:8780' },
  machines: [machine()],
  ...over,
});

function problems(d: unknown): string[] {
  try {
    parseSpec(stringify(d), 'kubedos.yaml');
    return [];
  } catch (err) {
    if (!(err instanceof SpecError)) throw err;
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
}

describe('the spec', () => {
  test('the example rack parses: two targets on one lease directory, fingerprints and MACs normalised, iso for one and pxe for the other', async () => {
    const spec = await loadSpec(path.join(ROOT, 'examples', 'baremetal'));
    const rack = spec.targets.rack1!;
    const pxe = spec.targets['rack1-pxe']!;
    expect(rack).toMatchObject({ type: 'baremetal', provisioning: 'virtual-media', wipe: 'none', leaseDir: '/srv/kubedos/leases', bootServer: { url: 'http://10.20.0.5:8780', listen: '0.0.0.0' } });
    expect(pxe).toMatchObject({ type: 'baremetal', provisioning: 'pxe', leaseDir: '/srv/kubedos/leases' });
    if (rack.type !== 'baremetal') throw new Error('not baremetal');
    expect(rack.machines[0]).toMatchObject({ name: 'r1-u07', mac: '3c:ec:ef:10:07:01', disk: '/dev/nvme0n1', tls: { fingerprint: FP } });
    expect(rack.machines[3]).toMatchObject({ system: 'Blade.1', credentials: { username: 'admin', passwordFile: '/etc/kubedos/chassis-r1-u10.password' } });
    const image = { name: 'node', digest: 'a'.repeat(64) };
    expect(fleetInputFromSpec(spec, 'web', image).artifactFormat).toBe('iso');
    expect(fleetInputFromSpec(spec, 'edge', image).artifactFormat).toBe('pxe');
    expect(fleetInputFromSpec(spec, 'web', image).deployQueue).toBe('kubedos-kvm');
  });

  test('a minimal target: defaults, and a fingerprint written as openssl prints it or as bare hex is the same pin', () => {
    const parsed = parseSpec(stringify(doc(target({ machines: [machine({ tls: { fingerprint: `sha256 Fingerprint=${FP}` } })] }))), 'kubedos.yaml');
    expect(parsed.targets.rack).toMatchObject({ provisioning: 'virtual-media', wipe: 'none', tls: { fingerprint: FP }, machines: [{ tls: { fingerprint: FP } }] });
  });

  test.each([
    ['an http:// BMC', target({ machines: [machine({ bmc: 'http://10.0.10.7' })] }), /machines\[0\]\.bmc: BMC "http:\/\/10\.0\.10\.7" must be an https:\/\/ URL/],
    ['credentials in the BMC URL', target({ machines: [machine({ bmc: 'https://root:calvin@10.0.10.7' })] }), /must not hold credentials: name them in `credentials`/],
    ['a password in the spec', target({ credentials: { username: 'root', password: 'calvin' } }), /credentials: unknown key "password": secrets are never written in the spec/],
    ['no password reference', target({ credentials: { username: 'root' } }), /credentials: set exactly one of passwordEnv, passwordFile/],
    ['a secret as the variable name', target({ credentials: { username: 'root', passwordEnv: 'calvin!' } }), /give the NAME of a variable/],
    ['no TLS decision', target({ tls: undefined }), /machines m1 say nothing about their BMC's certificate: set tls \(fingerprint, ca or insecure\)/],
    ['two TLS decisions', target({ tls: { fingerprint: FP, insecure: true } }), /tls: set exactly one of fingerprint, ca, insecure \(got fingerprint and insecure\)/],
    ['insecure: false', target({ tls: { insecure: false } }), /tls\.insecure/],
    ['a short fingerprint', target({ tls: { fingerprint: 'AB:CD' } }), /invalid certificate fingerprint "AB:CD"/],
    ['virtual media without an address', target({ machines: [machine({ address: undefined })] }), /machines m1 have no address: an installed node is reached at its inventory address/],
    ['the same MAC twice', target({ machines: [machine(), machine({ name: 'm2', bmc: 'https://10.0.10.8', mac: '3c:ec:ef:10:07:01' })] }), /duplicate MAC address "3c:ec:ef:10:07:01"/],
    ['a bad disk', target({ machines: [machine({ disk: 'sda; reboot' })] }), /invalid disk "sda; reboot"/],
    ['a boot server URL with a path', target({ bootServer: { url: 'http://10.0.0.5:8780/boot' } }), /bootServer\.url "http:\/\/10\.0\.0\.5:8780\/boot" must be scheme, host and port only/],
    ['an https boot server without its certificate', target({ bootServer: { url: 'https://10.0.0.5:8443' } }), /an https:\/\/ bootServer\.url needs bootServer\.tls/],
    ['a PXE boot server on https', target({ provisioning: 'pxe', bootServer: { url: 'https://10.0.0.5:8443', tls: { cert: '/c', key: '/k' } } }), /a PXE target's boot server is http/],
    ['dhcp with virtual media', target({ dhcp: { interface: 'eth1', range: ['10.0.0.100', '10.0.0.200'] } }), /dhcp is for provisioning: pxe/],
  ])('refused: %s', (_what, t, message) => {
    expect(problems(doc(t)).join('\n')).toMatch(message);
  });

  test('PXE machines may leave their address to be learnt; an image without the format the method needs is refused', () => {
    expect(problems(doc(target({ provisioning: 'pxe', machines: [machine({ address: undefined })] })))).toEqual([]);
    expect(problems(doc(target({ provisioning: 'pxe' }), ['iso']))).toEqual([
      'fleets.web.image: image "node" cannot be deployed to target "rack": a baremetal target with its settings needs pxe but the image outputs iso; add pxe to images.node.outputs',
    ]);
    expect(problems(doc(target(), ['pxe']))[0]).toMatch(/a baremetal target with its settings needs iso/);
  });

  test('a fleet larger than the inventory is refused at validate', () => {
    expect(problems(doc(target(), ['iso'], 2))).toEqual([expect.stringMatching(/^targets\.rack\.machines: .*machines lists 1 machine.*2 replicas/)]);
  });
});

describe('media', () => {
  const entries = isoBootEntries({ name: 'node' }, 'KUBEDOS_ABCDEF01');
  test('the installer menus boot the install entry after 1 s, onto the machine\'s disk when it names one', () => {
    const isolinux = installIsolinux(isolinuxConfig(entries), '/dev/nvme0n1');
    expect(isolinux).toMatch(/^default install$/m);
    expect(isolinux).toMatch(/^timeout 10$/m);
    expect(isolinux).toContain('kubedos.install=/dev/nvme0n1 kubedos.disk=');
    expect(isolinux).not.toContain('kubedos.install=auto');
    const grub = installGrub(grubConfig(entries));
    expect(grub).toMatch(/^set default=install$/m);
    expect(grub).toMatch(/^set timeout=1$/m);
    expect(grub).toContain('kubedos.install=auto');
    expect(() => installGrub('set timeout=5\n')).toThrow(/no default or no install entry/);
  });

  test('a node\'s iPXE script: the bundle\'s, with its seed URL and the address iPXE got on the kernel line', () => {
    const bundle = '#!ipxe\n# c\nkernel n.vmlinuz initrd=n.initrd initrd=n.root.cpio boot=kubedos kubedos.root=/kubedos/root.squashfs\ninitrd n.initrd\ninitrd n.root.cpio\nboot\n';
    const script = nodeIpxeScript(bundle, 'http://10.0.0.5:8780/j/TOKEN/seed/');
    expect(script.split('\n')[2]).toBe(
      'kernel n.vmlinuz initrd=n.initrd initrd=n.root.cpio boot=kubedos kubedos.root=/kubedos/root.squashfs ds=nocloud;s=http://10.0.0.5:8780/j/TOKEN/seed/ ip=${netX/ip}::${netX/gateway}:${netX/netmask}::: BOOTIF=01-${netX/mac:hexhyp}',
    );
    expect(script.split('\n').slice(3)).toEqual(bundle.split('\n').slice(3));
    expect(() => pxeNodeArgs('https://10.0.0.5/seed/')).toThrow(/http:\/\/ and ends in \//);
    expect(() => nodeIpxeScript('#!ipxe\nboot\n', 'http://x/')).toThrow(/0 kernel lines/);
    expect(chainScript('/j/T/n.ipxe')).toBe('#!ipxe\n# KubeDos: this machine\'s provisioning job\nchain --autofree /j/T/n.ipxe\n');
  });
});

describe('DHCP for an isolated provisioning network', () => {
  test('dnsmasq answers only known machines, no DNS, iPXE the entry script and other ROMs iPXE over TFTP', () => {
    const argv = dnsmasqArgv(
      { interface: 'enp2s0', range: ['10.0.0.100', '10.0.0.200'], netmask: '255.255.255.0', leaseTime: 3_600_000 },
      [{ mac: '52:54:00:00:00:01', address: '10.0.0.11' }, { mac: '52:54:00:00:00:02' }],
      { leases: '/s/leases', log: '/s/log' },
      'http://10.0.0.5:8780/ipxe',
    );
    expect(argv).toEqual(
      expect.arrayContaining([
        '--port=0',
        '--interface=enp2s0',
        '--bind-interfaces',
        '--dhcp-range=10.0.0.100,10.0.0.200,255.255.255.0,3600',
        '--dhcp-host=52:54:00:00:00:01,10.0.0.11',
        '--dhcp-host=52:54:00:00:00:02',
        '--dhcp-ignore=tag:!known',
        '--dhcp-boot=tag:ipxe,http://10.0.0.5:8780/ipxe',
        '--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi',
        '--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe',
        '--tftp-root=/usr/lib/ipxe',
        '--dhcp-option=option:router',
      ]),
    );
    expect(parseLeases('1796169181 52:54:00:bd:00:01 10.0.0.11 m1 ff:56\n')).toEqual(new Map([['52:54:00:bd:00:01', '10.0.0.11']]));
  });
});

describe('the boot server', () => {
  test('byte ranges', () => {
    expect(parseRange(undefined, 100)).toBeUndefined();
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('invalid');
    expect(parseRange('bytes=1-2,5-6', 100)).toBe('invalid');
  });

  test('serves the entry script to anyone, a live job\'s files by token (ranges, HEAD), the chain by MAC, and nothing else', async () => {
    const file = path.join(ROOT, 'package.json');
    const seen: string[] = [];
    const server = await serveBoot('127.0.0.1', 0, {
      file: async (token, name, remote) => {
        seen.push(`${name} ${remote}`);
        return token === 'a'.repeat(32) && name === 'installer.iso' ? { kind: 'file', path: file, size: (await import('node:fs')).statSync(file).size, type: 'application/octet-stream' } : undefined;
      },
      chain: async (mac) => (mac === '52:54:00:bd:00:01' ? chainScript('/j/x/n.ipxe') : undefined),
    });
    const base = `http://127.0.0.1:${server.port}`;
    try {
      expect(await (await fetch(`${base}/ipxe`)).text()).toBe(IPXE_ENTRY);
      expect(IPXE_ENTRY).toContain('chain --autofree /boot/${netX/mac:hexhyp}');
      expect(await (await fetch(`${base}/boot/52-54-00-bd-00-01`)).text()).toContain('chain --autofree /j/x/n.ipxe');
      expect((await fetch(`${base}/boot/52-54-00-bd-00-02`)).status).toBe(404);
      const whole = await fetch(`${base}/j/${'a'.repeat(32)}/installer.iso`);
      expect(whole.status).toBe(200);
      expect(await whole.text()).toContain('"name": "kubedos"');
      const part = await fetch(`${base}/j/${'a'.repeat(32)}/installer.iso`, { headers: { range: 'bytes=0-0' } });
      expect([part.status, part.headers.get('content-range')?.startsWith('bytes 0-0/'), await part.text()]).toEqual([206, true, '{']);
      const head = await fetch(`${base}/j/${'a'.repeat(32)}/installer.iso`, { method: 'HEAD' });
      expect([head.status, head.headers.get('accept-ranges')]).toEqual([200, 'bytes']);
      for (const url of [`/j/${'b'.repeat(32)}/installer.iso`, `/j/${'a'.repeat(32)}/../package.json`, '/j/short/installer.iso', '/', '/package.json']) {
        expect((await fetch(`${base}${url}`)).status).toBe(404);
      }
      expect((await fetch(`${base}/ipxe`, { method: 'POST' })).status).toBe(405);
      expect(seen.every((s) => s.endsWith(' 127.0.0.1'))).toBe(true);
    } finally {
      await server.release();
    }
  });
});
