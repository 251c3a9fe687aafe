/**
 * The bare-metal target's own DHCP/TFTP for an isolated provisioning network (`dhcp:`): real
 * dnsmasq, started by the driver's DhcpServer on the host end of a veth pair whose other end is
 * in a network namespace of the test's own (nothing else of the host's network is touched), and
 * asked by a scripted DHCP client there (test/support/dhcp-client.py: one DISCOVER as a PXE or
 * iPXE ROM sends it, and one TFTP block).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DhcpServer } from '../../src/targets/baremetal/dhcp';

jest.setTimeout(120_000);

const id = randomBytes(3).toString('hex');
const netns = `kdbm-dhcp-${id}`;
const hostIf = `kdbmd${id}`;
const nsIf = `kdbme${id}`;
const CLIENT = path.join(__dirname, '..', 'support', 'dhcp-client.py');
let tmp: string;
let subnet: string;
let dhcp: DhcpServer;
const KNOWN = '52:54:00:d1:00:01';
const OTHER = '52:54:00:d1:00:02';
const STRANGER = '52:54:00:d1:00:99';

const run = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function freeSubnet(): string {
  const used = run(['ip', '-4', '-o', 'route']) + run(['ip', '-4', '-o', 'addr']);
  for (;;) {
    const a = 100 + Math.floor(Math.random() * 100);
    if (!used.includes(`10.${a}.`)) return `10.${a}.${Math.floor(Math.random() * 250)}`;
  }
}

function client(args: string[]): Record<string, unknown> {
  return JSON.parse(run(['ip', 'netns', 'exec', netns, 'python3', CLIENT, ...args]));
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-bm-dhcp-'));
  subnet = freeSubnet();
  run(['ip', 'netns', 'add', netns]);
  run(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
  run(['ip', 'link', 'set', nsIf, 'netns', netns]);
  run(['ip', 'addr', 'add', `${subnet}.1/24`, 'dev', hostIf]);
  run(['ip', 'link', 'set', hostIf, 'up']);
  run(['ip', 'netns', 'exec', netns, 'ip', 'link', 'set', nsIf, 'up']);
  dhcp = new DhcpServer(tmp, { interface: hostIf, range: [`${subnet}.100`, `${subnet}.150`], netmask: '255.255.255.0', router: `${subnet}.1`, leaseTime: 3_600_000 }, `http://${subnet}.1:8780/ipxe`);
});

afterAll(async () => {
  await dhcp?.stop();
  try {
    run(['ip', 'netns', 'del', netns]);
  } catch {
    /* never made */
  }
  try {
    run(['ip', 'link', 'del', hostIf]);
  } catch {
    /* went with the namespace */
  }
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

test('dnsmasq answers the leased machines only: iPXE gets the boot server\'s script, a UEFI PXE ROM iPXE over TFTP, a stranger nothing', async () => {
  await dhcp.serve([{ mac: KNOWN, address: `${subnet}.11` }, { mac: OTHER }]);
  expect(dhcp.runningPid()).toBeGreaterThan(0);

  const ipxe = client(['discover', nsIf, KNOWN, '--ipxe', '--arch', '7']);
  expect(ipxe).toMatchObject({ yiaddr: `${subnet}.11`, file: `http://${subnet}.1:8780/ipxe` });
  // Router offered; no DNS server (option 6) at all.
  expect((ipxe.options as Record<string, string>)['3']).toBe(Buffer.from(`${subnet}.1`.split('.').map(Number)).toString('hex'));
  expect((ipxe.options as Record<string, string>)['6']).toBeUndefined();

  const rom = client(['discover', nsIf, OTHER, '--arch', '7']);
  expect(rom).toMatchObject({ file: 'ipxe.efi', siaddr: `${subnet}.1` });
  const offered = Number(String(rom.yiaddr).split('.')[3]);
  expect(offered).toBeGreaterThanOrEqual(100);
  expect(offered).toBeLessThanOrEqual(150);
  expect(client(['discover', nsIf, OTHER, '--arch', '0']).file).toBe('undionly.kpxe');

  expect(client(['discover', nsIf, STRANGER, '--ipxe', '--timeout', '3'])).toEqual({ offer: null });

  // What the ROM then loads over TFTP is Debian's iPXE.
  const block = client(['tftp', nsIf, `${subnet}.1`, 'ipxe.efi']);
  expect(block).toMatchObject({ opcode: 3, block: 1 });
  expect(block.data).toBe(readFileSync('/usr/lib/ipxe/ipxe.efi').subarray(0, 512).toString('hex'));
});

test('a lease is recorded where the driver learns addresses; a machine given back is no longer answered; stop ends dnsmasq', async () => {
  expect(client(['discover', nsIf, KNOWN, '--ipxe', '--request'])).toEqual({ ack: `${subnet}.11` });
  expect((await dhcp.leases()).get(KNOWN)).toBe(`${subnet}.11`);
  const pid = dhcp.runningPid();
  await dhcp.serve([{ mac: KNOWN, address: `${subnet}.11` }, { mac: OTHER }]);
  expect(dhcp.runningPid()).toBe(pid); // the same machines: left alone
  await dhcp.serve([{ mac: OTHER }]);
  expect(dhcp.runningPid()).not.toBe(pid);
  // The lease survives the restart (the file is dnsmasq's memory).
  expect((await dhcp.leases()).get(KNOWN)).toBe(`${subnet}.11`);
  expect(client(['discover', nsIf, KNOWN, '--ipxe', '--timeout', '3'])).toEqual({ offer: null });
  expect(client(['discover', nsIf, OTHER, '--ipxe']).file).toBe(`http://${subnet}.1:8780/ipxe`);
  await dhcp.stop();
  expect(dhcp.runningPid()).toBeUndefined();
});
