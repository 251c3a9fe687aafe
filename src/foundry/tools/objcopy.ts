/** objcopy: assembles a unified kernel image from the systemd stub. Builds argv only. */
import { runTool, type RunResult } from '../../exec/run';
import type { ToolOptions } from './common';

export interface PeSection {
  name: string;
  file: string;
  /** Virtual address the section is placed at. */
  vma: number;
}

export function objcopyAddSectionsArgv(stub: string, out: string, sections: readonly PeSection[]): string[] {
  const argv = ['objcopy'];
  for (const s of sections) {
    argv.push('--add-section', `${s.name}=${s.file}`, '--change-section-vma', `${s.name}=0x${s.vma.toString(16)}`);
  }
  argv.push(stub, out);
  return argv;
}

export function objcopyAddSections(stub: string, out: string, sections: readonly PeSection[], options: ToolOptions = {}): Promise<RunResult> {
  return runTool(objcopyAddSectionsArgv(stub, out, sections), options);
}
