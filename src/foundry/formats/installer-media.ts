/**
 * Repacked Debian installer media (see ../installer-media.ts): the spec's installer ISO with a
 * preseed generated from the plan and the role's payload, installing unattended from either boot
 * path (BIOS isolinux, UEFI GRUB). One file, `<name>.installer.iso`.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { BuildContext } from '../context';
import {
  describeMedia, INSTALLER_PATHS, installerGrubConfig, installerIsolinuxConfig, obtainInstallerIso, parseElTorito, parseFindOutput,
  preseedConfig, writeInstallerInitrd,
} from '../installer-media';
import { xorrisoExtract, xorrisoFindFiles, xorrisoRepack, xorrisoReport, type XorrisoMapping } from '../tools/xorriso';
import { publishArtifact, type OutputFormat } from './format';
import { VM_OR_SERVER_MODULES } from './early-boot';

export const installerMedia: OutputFormat<'installer-media'> = {
  name: 'installer-media',
  description: 'Debian installer ISO (images.<name>.installerIso) repacked with a preseed that installs the image unattended',
  consumes: 'installer media and disk',
  earlyBoot: { modules: VM_OR_SERVER_MODULES, purpose: 'installer-media: the installed disk on VMs and servers' },
  tools: ['xorriso', 'pigz'],
  // The ISO it repacks, by content: where it lives changes nothing.
  options: (plan) => ({ installerIso: plan.image.installerIso?.sha256 }),
  fileName: (image) => `${image.name}.installer.iso`,
  produce: async (ctx: BuildContext) => {
    const { plan } = ctx;
    const epoch = plan.sourceDateEpoch;
    const run = { signal: ctx.options.signal };
    const source = await obtainInstallerIso(ctx);
    const dir = path.join(ctx.workDir, 'installer-media');
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { recursive: true });

    const elTorito = parseElTorito((await xorrisoReport(source, run)).stdout);
    const files = parseFindOutput((await xorrisoFindFiles(source, run)).stdout);
    const host = (name: string) => path.join(dir, name);
    const hasGrubCfg = files.includes(INSTALLER_PATHS.grubCfg);
    if (hasGrubCfg) await xorrisoExtract(source, [{ iso: INSTALLER_PATHS.grubCfg, host: host('grub.cfg.orig') }], run);
    const media = describeMedia(elTorito, files, hasGrubCfg ? await fs.readFile(host('grub.cfg.orig'), 'utf8') : undefined);
    await xorrisoExtract(source, [{ iso: media.isolinuxCfg, host: host('isolinux.cfg.orig') }, { iso: media.initrd, host: host('initrd.orig') }], run);

    // The new directory is mapped as a whole (a directory xorriso creates itself gets the clock's time).
    const added = host('added');
    const addedDir = path.posix.dirname(INSTALLER_PATHS.initrd);
    await fs.mkdir(path.join(added, addedDir), { recursive: true });
    await writeInstallerInitrd(ctx, host('initrd.orig'), path.join(added, INSTALLER_PATHS.initrd));
    await fs.writeFile(path.join(added, INSTALLER_PATHS.preseed), preseedConfig(plan, ctx.inputDigest!));
    await fs.writeFile(host('grub.cfg'), installerGrubConfig(await fs.readFile(host('grub.cfg.orig'), 'utf8'), plan, media.kernel));
    const isolinuxDir = path.posix.dirname(media.isolinuxBin);
    await fs.writeFile(host('isolinux.cfg'), installerIsolinuxConfig(plan, media.kernel, isolinuxDir));
    const maps: XorrisoMapping[] = [
      { host: path.join(added, addedDir), iso: addedDir },
      { host: host('grub.cfg'), iso: INSTALLER_PATHS.grubCfg },
      { host: host('isolinux.cfg.orig'), iso: path.posix.join(isolinuxDir, INSTALLER_PATHS.debianIsolinuxCfg) },
      { host: host('isolinux.cfg'), iso: media.isolinuxCfg },
    ];
    for (const f of [path.join(added, INSTALLER_PATHS.initrd), path.join(added, INSTALLER_PATHS.preseed), ...maps.map((m) => m.host)]) await fs.utimes(f, epoch, epoch);
    return [await publishArtifact(ctx, 'installer-media', installerMedia.fileName(plan.image), (tmp) => xorrisoRepack(source, tmp, maps, epoch, run).then(() => undefined))];
  },
};
