/**
 * The per-tool modules of the engine only build argv arrays: pin each one explicitly, so a
 * changed flag (which can change bytes on the disk) is a visible, reviewed diff.
 */
import { aptGetPrintUrisArgv, aptGetUpdateArgv } from '../../src/foundry/tools/apt-get';
import { cpSparseArgv } from '../../src/foundry/tools/cp';
import { debugfsRequestArgv, debugfsWriteArgv } from '../../src/foundry/tools/debugfs';
import { dataExtentsArgv } from '../../src/foundry/tools/data-extents';
import { dpkgScanpackagesArgv } from '../../src/foundry/tools/dpkg-scanpackages';
import { mkfsExt4Argv, mkfsVfatArgv } from '../../src/foundry/tools/mkfs';
import { mmdebstrapArgv } from '../../src/foundry/tools/mmdebstrap';
import { mcopyArgv, mdirArgv, mmdArgv } from '../../src/foundry/tools/mtools';
import { objcopyAddSectionsArgv } from '../../src/foundry/tools/objcopy';
import { qemuImgCheckArgv, qemuImgConvertArgv, qemuImgInfoArgv } from '../../src/foundry/tools/qemu-img';
import { qemuMachineArgv } from '../../src/foundry/tools/qemu-system';
import { sfdiskArgv, sfdiskDumpArgv } from '../../src/foundry/tools/sfdisk';

describe('apt-get', () => {
  test('update', () => {
    expect(aptGetUpdateArgv()).toEqual(['apt-get', 'update', '-q']);
  });
  test('print-uris with SHA256 forced', () => {
    expect(aptGetPrintUrisArgv(['?narrow(?essential)', 'apt', 'bash'])).toEqual([
      'apt-get', 'install', '--print-uris', '-qq', '--yes', '-o', 'Acquire::ForceHash=SHA256', '?narrow(?essential)', 'apt', 'bash',
    ]);
  });
});

test('cp: sparse, reflink when possible', () => {
  expect(cpSparseArgv('/a.raw', '/b.raw')).toEqual(['cp', '--sparse=always', '--reflink=auto', '/a.raw', '/b.raw']);
});

describe('debugfs', () => {
  test('write a command file', () => {
    expect(debugfsWriteArgv('/d.raw?offset=1048576', '/cmds')).toEqual(['debugfs', '-w', '-f', '/cmds', '/d.raw?offset=1048576']);
  });
  test('one read-only request', () => {
    expect(debugfsRequestArgv('/root.ext4', 'cat /etc/shadow')).toEqual(['debugfs', '-R', 'cat /etc/shadow', '/root.ext4']);
  });
});

test('data extents: perl SEEK_DATA (3) / SEEK_HOLE (4) loop, the file as its only argument', () => {
  const argv = dataExtentsArgv('/d.raw');
  expect(argv.slice(0, 2)).toEqual(['perl', '-e']);
  expect(argv[2]).toContain('sysseek($f, $pos, 3)');
  expect(argv[2]).toContain('sysseek($f, $d, 4)');
  expect(argv[2]).toContain('$!{ENXIO}');
  expect(argv.slice(3)).toEqual(['/d.raw']);
});

test('dpkg-scanpackages: multiversion, no override file', () => {
  expect(dpkgScanpackagesArgv()).toEqual(['dpkg-scanpackages', '--multiversion', '.', '/dev/null']);
});

describe('mkfs', () => {
  test('ext4: fixed block and inode size, label, UUID, hash seed, populated from a tree', () => {
    expect(
      mkfsExt4Argv({ image: '/r.ext4', sizeKiB: 1024, sourceDir: '/tree', uuid: 'U', hashSeed: 'H', label: 'root', epoch: 1700000000 }),
    ).toEqual([
      'mkfs.ext4', '-q', '-F', '-b', '4096', '-I', '256', '-L', 'root', '-U', 'U',
      '-E', 'hash_seed=H,lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0', '-d', '/tree', '/r.ext4', '1024k',
    ]);
  });
  test('ext4 in place at an offset of a disk: offset and nodiscard, else the same', () => {
    expect(mkfsExt4Argv({ image: '/disk.raw', sizeKiB: 1024, sourceDir: '/tree', uuid: 'U', hashSeed: 'H', label: 'root', epoch: 1700000000, offsetBytes: 105906176 })).toContain(
      'offset=105906176,nodiscard,hash_seed=H,lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0',
    );
  });
  test('vfat: invariant, fixed volume id, FAT32', () => {
    expect(mkfsVfatArgv({ image: '/esp', sizeKiB: 102400, volumeId: '0badcafe', label: 'ESP' })).toEqual([
      'mkfs.vfat', '--invariant', '-i', '0badcafe', '-F', '32', '-n', 'ESP', '-C', '/esp', '102400',
    ]);
  });
});

describe('mmdebstrap', () => {
  test('defaults: root mode, minbase', () => {
    expect(mmdebstrapArgv({ suite: 'bookworm', target: '/t', sourcesFile: '/s.list', architecture: 'amd64', include: [] })).toEqual([
      'mmdebstrap', '--mode=root', '--variant=minbase', '--architectures=amd64', 'bookworm', '/t', '/s.list',
    ]);
  });
  test('every option in a fixed order', () => {
    expect(
      mmdebstrapArgv({
        suite: 'bookworm', target: '/t', sourcesFile: '/s.list', architecture: 'amd64', variant: 'essential', mode: 'unshare',
        include: ['a=1', 'b=2'], dpkgOptions: ['path-exclude=/x/*'], aptOptions: ['Acquire::Retries "3"'],
        setupHooks: ['s'], essentialHooks: ['e'], customizeHooks: ['c1', 'c2'], skip: ['cleanup/tmp'],
      }),
    ).toEqual([
      'mmdebstrap', '--mode=unshare', '--variant=essential', '--architectures=amd64', '--include=a=1,b=2',
      '--dpkgopt=path-exclude=/x/*', '--aptopt=Acquire::Retries "3"', '--setup-hook=s', '--essential-hook=e',
      '--customize-hook=c1', '--customize-hook=c2', '--skip=cleanup/tmp', 'bookworm', '/t', '/s.list',
    ]);
  });
});

describe('mtools', () => {
  test('mmd', () => expect(mmdArgv('/esp', '/EFI')).toEqual(['mmd', '-i', '/esp', '::/EFI']));
  test('mcopy keeps mtimes, overwrites', () => {
    expect(mcopyArgv('/esp', '/uki.efi', '/EFI/BOOT/BOOTX64.EFI')).toEqual(['mcopy', '-m', '-o', '-i', '/esp', '/uki.efi', '::/EFI/BOOT/BOOTX64.EFI']);
  });
  test('mdir', () => expect(mdirArgv('/esp', '/EFI')).toEqual(['mdir', '-i', '/esp', '-/', '::/EFI']));
});

test('objcopy: one --add-section/--change-section-vma pair per section, hex addresses', () => {
  expect(
    objcopyAddSectionsArgv('/stub.efi', '/out.efi', [
      { name: '.osrel', file: '/os-release', vma: 0x20000 },
      { name: '.linux', file: '/vmlinuz', vma: 0x2000000 },
    ]),
  ).toEqual([
    'objcopy', '--add-section', '.osrel=/os-release', '--change-section-vma', '.osrel=0x20000',
    '--add-section', '.linux=/vmlinuz', '--change-section-vma', '.linux=0x2000000', '/stub.efi', '/out.efi',
  ]);
});

describe('qemu-img', () => {
  test('convert without options', () => {
    expect(qemuImgConvertArgv({ source: '/d.raw', sourceFormat: 'raw', dest: '/d.qcow2', destFormat: 'qcow2' })).toEqual([
      'qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', '/d.raw', '/d.qcow2',
    ]);
  });
  test('convert with creation options, in the given order', () => {
    expect(
      qemuImgConvertArgv({ source: '/d.raw', sourceFormat: 'raw', dest: '/d.vmdk', destFormat: 'vmdk', options: { subformat: 'streamOptimized', adapter_type: 'lsilogic' } }),
    ).toEqual(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized,adapter_type=lsilogic', '/d.raw', '/d.vmdk']);
  });
  test('convert with a destination cache mode', () => {
    expect(qemuImgConvertArgv({ source: '/d.raw', sourceFormat: 'raw', dest: '/d.qcow2', destFormat: 'qcow2', options: { compat: '1.1' }, cache: 'unsafe' })).toEqual([
      'qemu-img', 'convert', '-q', '-t', 'unsafe', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=1.1', '/d.raw', '/d.qcow2',
    ]);
  });
  test('check and info as JSON', () => {
    expect(qemuImgCheckArgv('/d.qcow2', 'qcow2')).toEqual(['qemu-img', 'check', '-f', 'qcow2', '--output=json', '/d.qcow2']);
    expect(qemuImgInfoArgv('/d.vmdk', 'vmdk')).toEqual(['qemu-img', 'info', '-f', 'vmdk', '--output=json', '/d.vmdk']);
  });
});

test('qemu-system-x86_64: TCG, q35, OVMF pflash pair, virtio disk, serial to a file, commas in paths escaped', () => {
  expect(
    qemuMachineArgv({
      firmware: { ovmfCode: '/CODE.fd', ovmfVars: '/VARS.fd' },
      disks: [{ file: '/d,1.qcow2', format: 'qcow2', snapshot: true }],
      boot: 'disk',
      serialLog: '/serial.log',
    }),
  ).toEqual([
    'qemu-system-x86_64', '-accel', 'tcg,thread=multi', '-cpu', 'max', '-machine', 'q35', '-smp', '2', '-m', '1024',
    '-display', 'none', '-monitor', 'none', '-no-reboot', '-nodefaults',
    '-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=/CODE.fd',
    '-drive', 'if=pflash,format=raw,unit=1,file=/VARS.fd',
    '-drive', 'if=none,id=hd0,format=qcow2,file=/d,,1.qcow2,discard=unmap,detect-zeroes=unmap,snapshot=on',
    '-device', 'virtio-blk-pci,drive=hd0,bootindex=1',
    '-chardev', 'file,id=ser0,path=/serial.log', '-serial', 'chardev:ser0',
  ]);
});

describe('sfdisk', () => {
  test('script on stdin, never wipes, never tells the kernel', () => {
    expect(sfdiskArgv('/d.raw')).toEqual(['sfdisk', '--quiet', '--no-reread', '--no-tell-kernel', '--wipe', 'never', '--wipe-partitions', 'never', '/d.raw']);
  });
  test('dump', () => expect(sfdiskDumpArgv('/d.raw')).toEqual(['sfdisk', '--dump', '/d.raw']));
});
