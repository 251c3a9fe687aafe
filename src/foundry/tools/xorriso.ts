/**
 * xorriso: ISO 9660 images (Rock Ridge) with El Torito boot records, made new or repacked from an
 * existing image. Dates and ids come from SOURCE_DATE_EPOCH (volume dates, volume uuid, GPT GUIDs,
 * every file's atime/ctime set to its mtime). `-no_rc` keeps startup files out. Builds argv only.
 */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface XorrisoHybridArgs {
  out: string;
  /** Volume id (ISO 9660 d-characters, ≤ 32). */
  volid: string;
  /** The tree written to the image (its mtimes are kept; ownership and permissions rationalised by -r). */
  sourceDir: string;
  /** BIOS El Torito: isolinux.bin and the boot catalog, paths inside the image. */
  isolinuxBin: string;
  bootCatalog: string;
  /** The isohybrid MBR (isolinux's isohdpfx.bin) that lets BIOSes boot the image from a USB stick. */
  isohybridMbr: string;
  /** UEFI El Torito: the FAT image holding \EFI\BOOT\BOOTX64.EFI, path inside the image (also a GPT partition). */
  efiImage: string;
}

/**
 * A hybrid BIOS+UEFI ISO in the layout Debian's own media use: isolinux El Torito image plus
 * isohybrid MBR for BIOS; an El Torito EFI image, also exposed as a GPT partition, for UEFI.
 */
export function xorrisoHybridArgv(a: XorrisoHybridArgs): string[] {
  return [
    'xorriso', '-no_rc', '-as', 'mkisofs', '-o', a.out, '-V', a.volid, '-iso-level', '3', '-r',
    '-b', a.isolinuxBin, '-c', a.bootCatalog, '-no-emul-boot', '-boot-load-size', '4', '-boot-info-table',
    '-isohybrid-mbr', a.isohybridMbr,
    '-eltorito-alt-boot', '-e', a.efiImage, '-no-emul-boot', '-isohybrid-gpt-basdat',
    a.sourceDir,
  ];
}

export function xorrisoHybrid(a: XorrisoHybridArgs, epoch: number, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(xorrisoHybridArgv(a), { ...options, sourceDateEpoch: epoch });
}

/**
 * A small data ISO (no boot records) of a directory, Rock Ridge and Joliet: what cloud-init's
 * `cloud-localds` makes for a NoCloud seed (volume id `CIDATA`), readable by every OS.
 */
export function xorrisoDataIsoArgv(a: { out: string; volid: string; sourceDir: string }): string[] {
  return ['xorriso', '-no_rc', '-as', 'mkisofs', '-o', a.out, '-V', a.volid, '-J', '-r', a.sourceDir];
}

export function xorrisoDataIso(a: { out: string; volid: string; sourceDir: string }, epoch: number, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(xorrisoDataIsoArgv(a), { ...options, sourceDateEpoch: epoch });
}

/** A host file put into (or replacing one in) an image. */
export interface XorrisoMapping {
  host: string;
  iso: string;
}

/**
 * Repack: a new image from an existing one with files added or replaced, its El Torito boot
 * records, isohybrid MBR and partition tables replayed as they were (`-boot_image any replay`).
 */
export function xorrisoRepackArgv(indev: string, outdev: string, maps: readonly XorrisoMapping[]): string[] {
  return [
    'xorriso', '-no_rc', '-indev', indev, '-outdev', outdev, '-boot_image', 'any', 'replay',
    ...maps.flatMap((m) => ['-map', m.host, m.iso]),
  ];
}

export function xorrisoRepack(indev: string, outdev: string, maps: readonly XorrisoMapping[], epoch: number, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(xorrisoRepackArgv(indev, outdev, maps), { ...options, sourceDateEpoch: epoch });
}

/** Copy files out of an image (no mount). */
export function xorrisoExtractArgv(indev: string, files: readonly XorrisoMapping[]): string[] {
  return ['xorriso', '-no_rc', '-osirrox', 'on', '-indev', indev, ...files.flatMap((f) => ['-extract', f.iso, f.host])];
}

export function xorrisoExtract(indev: string, files: readonly XorrisoMapping[], options: ToolOptions = {}): Promise<RunResult> {
  return runTool(xorrisoExtractArgv(indev, files), options);
}

/** Every regular file of an image, one quoted path per line on stdout. */
export function xorrisoFindFilesArgv(indev: string): string[] {
  return ['xorriso', '-no_rc', '-indev', indev, '-find', '/', '-type', 'f'];
}

export function xorrisoFindFiles(indev: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(xorrisoFindFilesArgv(indev), options);
}

/** The El Torito boot catalog and the volume descriptor, as xorriso reports them (stdout). */
export function xorrisoReportArgv(indev: string): string[] {
  return ['xorriso', '-no_rc', '-indev', indev, '-report_el_torito', 'plain', '-pvd_info'];
}

export function xorrisoReport(indev: string, options: ToolOptions = {}): Promise<RunResult> {
  return runTool(xorrisoReportArgv(indev), options);
}
