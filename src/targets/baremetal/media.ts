/**
 * What a machine boots, made on the worker from the verified artifact and the node's identity:
 *
 * - The unattended installer: the image's `iso` (menu default `live`, 5 s) repacked once per
 *   digest and disk with its two boot menus (isolinux for BIOS, GRUB for UEFI) set to the
 *   `install` entry after 1 s, and the entry's `kubedos.install=auto` replaced by the machine's
 *   disk when the inventory names one. Only the two menu files change (`xorriso -boot_image any
 *   replay` keeps the El Torito records, the hybrid MBR and the GPT); the installer writes the raw
 *   image to the disk and powers off.
 * - The node's cidata ISO: its NoCloud meta-data and user-data (nocloud.ts) on a tiny ISO 9660
 *   volume labelled CIDATA, inserted on the virtual CD once the installer is done, read by the
 *   installed system at first boot (the image's NoCloud reader, or stock cloud-init).
 * - The node's iPXE script: the pxe bundle's own script with `ds=nocloud;s=<its seed URL>` and the
 *   address iPXE got (`ip=`, `BOOTIF=`, expanded by iPXE) on the kernel line, for the image's
 *   NoCloud-net reader (src/foundry/nocloud-net-reader.ts).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BuildFailedError } from '../../errors';
import { xorrisoDataIso, xorrisoExtract, xorrisoRepack } from '../../foundry/tools/xorriso';
import type { DriverContext } from '../driver';
import { renderNocloud, type NocloudInput } from '../nocloud';

/** Where the iso format keeps its two menus (src/foundry/formats/iso.ts). */
export const ISO_MENUS = { isolinux: '/isolinux/isolinux.cfg', grub: '/boot/grub/grub.cfg' } as const;

/** Seconds the installer's menus wait before the install entry (0 would wait for ever in isolinux). */
const INSTALL_MENU_SECONDS = 1;

/** The isolinux menu set to install: `default install`, `timeout` 1 s, the disk on the install entry. */
export function installIsolinux(cfg: string, disk?: string): string {
  if (!/^default \S+$/m.test(cfg) || !/^label install$/m.test(cfg)) throw new BuildFailedError('the ISO\'s isolinux.cfg has no default or no install entry: is it an iso of this KubeDos version?');
  let out = cfg.replace(/^default \S+$/m, 'default install').replace(/^timeout \d+$/m, `timeout ${INSTALL_MENU_SECONDS * 10}`);
  if (disk) out = out.replace(/kubedos\.install=auto\b/g, `kubedos.install=${disk}`);
  return out;
}

/** The GRUB menu set to install: `set default=install`, `set timeout=1`, the disk on the install entry. */
export function installGrub(cfg: string, disk?: string): string {
  if (!/^set default=\S+$/m.test(cfg) || !/--id install\b/.test(cfg)) throw new BuildFailedError('the ISO\'s grub.cfg has no default or no install entry: is it an iso of this KubeDos version?');
  let out = cfg.replace(/^set default=\S+$/m, 'set default=install').replace(/^set timeout=\d+$/m, `set timeout=${INSTALL_MENU_SECONDS}`);
  if (disk) out = out.replace(/kubedos\.install=auto\b/g, `kubedos.install=${disk}`);
  return out;
}

async function scratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kubedos-bm-'));
  try {
    return await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Repack `iso` into `out` (atomically) as the unattended installer for `disk` (or the first disk). */
export async function writeInstallerIso(iso: string, out: string, disk: string | undefined, epoch: number, ctx: DriverContext): Promise<void> {
  await scratch(async (dir) => {
    const isolinux = path.join(dir, 'isolinux.cfg');
    const grub = path.join(dir, 'grub.cfg');
    await xorrisoExtract(iso, [{ iso: ISO_MENUS.isolinux, host: isolinux }, { iso: ISO_MENUS.grub, host: grub }], { signal: ctx.signal });
    await fs.writeFile(isolinux, installIsolinux(await fs.readFile(isolinux, 'utf8'), disk));
    await fs.writeFile(grub, installGrub(await fs.readFile(grub, 'utf8'), disk));
    const tmp = `${out}.tmp-${process.pid}`;
    await fs.rm(tmp, { force: true });
    await xorrisoRepack(iso, tmp, [{ host: isolinux, iso: ISO_MENUS.isolinux }, { host: grub, iso: ISO_MENUS.grub }], epoch, { signal: ctx.signal, timeoutMs: 10 * 60_000 });
    await fs.chmod(tmp, 0o444);
    await fs.rename(tmp, out);
  });
}

/** The node's cidata ISO (mode 0600: it holds the private host key). */
export async function writeSeedIso(input: NocloudInput, out: string, ctx: DriverContext): Promise<void> {
  await scratch(async (dir) => {
    const tree = path.join(dir, 'cidata');
    await fs.mkdir(tree, { mode: 0o700 });
    for (const [name, content] of Object.entries(renderNocloud(input))) await fs.writeFile(path.join(tree, name), content, { mode: 0o600 });
    const tmp = `${out}.tmp-${process.pid}`;
    await xorrisoDataIso({ out: tmp, volid: 'CIDATA', sourceDir: tree }, 0, { signal: ctx.signal });
    await fs.chmod(tmp, 0o600);
    await fs.rename(tmp, out);
  });
}

/**
 * Kernel arguments a PXE node boots with besides the bundle's own: where its NoCloud documents
 * are, and the address iPXE was given (iPXE fills in the `${…}`), so the image's reader can fetch
 * them before the system's own networking starts.
 */
export function pxeNodeArgs(seedUrl: string): string {
  if (!/^http:\/\/[^\s;]+\/$/.test(seedUrl)) throw new TypeError(`a seed URL is http:// and ends in /, got ${JSON.stringify(seedUrl)}`);
  return `ds=nocloud;s=${seedUrl} ip=\${netX/ip}::\${netX/gateway}:\${netX/netmask}::: BOOTIF=01-\${netX/mac:hexhyp}`;
}

/** The bundle's iPXE script with the node's arguments on its (single) kernel line. */
export function nodeIpxeScript(bundleScript: string, seedUrl: string): string {
  const lines = bundleScript.split('\n');
  const kernel = lines.filter((l) => /^kernel\s/.test(l));
  if (kernel.length !== 1) throw new BuildFailedError(`the pxe bundle's iPXE script has ${kernel.length} kernel lines; expected one`);
  return lines.map((l) => (/^kernel\s/.test(l) ? `${l.trimEnd()} ${pxeNodeArgs(seedUrl)}` : l)).join('\n');
}

/** The iPXE script the boot server answers a machine's MAC with: continue at its job's script. */
export function chainScript(scriptPath: string): string {
  return `#!ipxe\n# KubeDos: this machine's provisioning job\nchain --autofree ${scriptPath}\n`;
}
