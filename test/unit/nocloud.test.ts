/**
 * Deploy-time identity as a NoCloud seed: what the Foundry writes (src/targets/nocloud.ts), and
 * what the image's own reader (src/foundry/nocloud-reader.ts) makes of it — run here for real with
 * dash and mawk (the image's shell and awk) against a scratch root instead of /, on the files
 * read back out of the seed image with mtools.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { NOCLOUD_AWK } from '../../src/foundry/nocloud-reader';
import { generateIdentity } from '../../src/targets/identity';
import { scratchRoot } from '../support/scratch-root';
import { renderNocloud, writeNocloudSeed, yamlQuote } from '../../src/targets/nocloud';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-nocloud-test-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const identity = generateIdentity('worker-0001');
const keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx2k1yq5cXzRk0m9YV0l3cJvY8QdYgZ0m2l9ZsV1c3d ops@example #1 it's", 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ test'];

/** Run the awk parser on a document; the files it wrote, by name. */
function parse(doc: string): Record<string, string> {
  const dir = mkdtempSync(path.join(tmp, 'parse-'));
  const awkFile = path.join(dir, 'nocloud.awk');
  const input = path.join(dir, 'doc.yaml');
  const out = path.join(dir, 'out');
  execFileSync('mkdir', [out]);
  require('node:fs').writeFileSync(awkFile, NOCLOUD_AWK);
  require('node:fs').writeFileSync(input, doc);
  execFileSync('mawk', ['-v', `out=${out}`, '-f', awkFile, input]);
  const files: Record<string, string> = {};
  for (const name of require('node:fs').readdirSync(out) as string[]) files[name] = readFileSync(path.join(out, name), 'utf8');
  return files;
}

describe('the seed the Foundry writes', () => {
  test('standard NoCloud files: meta-data and a #cloud-config user-data with cloud-init keys', () => {
    const { 'meta-data': meta, 'user-data': user } = renderNocloud({ instanceId: 'p1-workers-0001', identity, authorizedKeys: keys });
    expect(meta).toBe("instance-id: 'p1-workers-0001'\nlocal-hostname: 'worker-0001'\n");
    expect(user.split('\n')[0]).toBe('#cloud-config');
    for (const key of ['hostname:', 'ssh_keys:', '  ed25519_private: |', '  ed25519_public:', 'ssh_genkeytypes: []', 'disable_root: false', 'ssh_authorized_keys:', 'write_files:', '  - path: /etc/machine-id']) {
      expect(user).toContain(`\n${key}`);
    }
    expect(user).toContain(`    content: |\n      ${identity.machineId}\n`);
  });

  test('valid YAML that a YAML library (as cloud-init uses) reads as the intended cloud-config', () => {
    const { 'meta-data': meta, 'user-data': user } = renderNocloud({ instanceId: 'p1-workers-0001', identity, authorizedKeys: keys });
    expect(parseYaml(meta)).toEqual({ 'instance-id': 'p1-workers-0001', 'local-hostname': 'worker-0001' });
    expect(parseYaml(user)).toEqual({
      hostname: 'worker-0001',
      preserve_hostname: false,
      ssh_deletekeys: true,
      ssh_genkeytypes: [],
      ssh_keys: { ed25519_private: identity.hostKeyPrivate, ed25519_public: identity.hostKeyPublic },
      disable_root: false,
      ssh_authorized_keys: keys,
      write_files: [{ path: '/etc/machine-id', permissions: '0444', content: `${identity.machineId}\n` }],
    });
  });

  test('its own parser reads back exactly what was written (quotes, comments, the key block)', () => {
    const files = parse(renderNocloud({ instanceId: 'p1-workers-0001', identity, authorizedKeys: keys })['user-data']);
    expect(files).toEqual({
      hostname: 'worker-0001',
      preserve_hostname: 'false',
      ssh_deletekeys: 'true',
      'ssh_keys.ed25519_private': identity.hostKeyPrivate,
      'ssh_keys.ed25519_public': identity.hostKeyPublic,
      disable_root: 'false',
      'ssh_authorized_keys.0': keys[0],
      'ssh_authorized_keys.1': keys[1],
      'write_files.0.path': '/etc/machine-id',
      'write_files.0.permissions': '0444',
      'write_files.0.content': `${identity.machineId}\n`,
    });
  });

  test('values that cannot be one YAML line are refused, not smuggled', () => {
    expect(() => yamlQuote('a\nb: c', 'key')).toThrow(/single line/);
    expect(() => renderNocloud({ instanceId: 'x', identity, authorizedKeys: ['ssh-ed25519 AAAA x\nwrite_files: []'] })).toThrow(/single line/);
    expect(() => renderNocloud({ instanceId: 'x', identity: { ...identity, hostname: 'a;b' }, authorizedKeys: [] })).toThrow(/hostname/);
  });
});

describe('the parser on YAML written by others', () => {
  test('double quotes, |- blocks, sequences at the key indent, comments; flow collections skipped', () => {
    const files = parse(
      [
        '#cloud-config',
        '# a comment',
        'hostname: "node-\\"1\\"" # trailing comment',
        'plain: value with # inside? no, a comment',
        "quoted: 'it''s # not a comment'",
        'list: [a, b]',
        'block: |-',
        '  line 1',
        '',
        '    indented',
        'seq:',
        '- one',
        "- 'two'",
        'nested:',
        '  deeper:',
        '    key: v',
        'write_files:',
        '- path: /a',
        '  content: |',
        '    x',
        '- path: /b',
        '',
      ].join('\n'),
    );
    expect(files).toEqual({
      hostname: 'node-"1"',
      plain: 'value with',
      quoted: "it's # not a comment",
      block: 'line 1\n\n  indented',
      'seq.0': 'one',
      'seq.1': 'two',
      'nested.deeper.key': 'v',
      'write_files.0.path': '/a',
      'write_files.0.content': 'x\n',
      'write_files.1.path': '/b',
    });
  });
});

describe('the reader in the image, on a scratch root', () => {
  const awk = spawnSync('mawk', ['-W', 'version']).status === 0 ? 'mawk' : 'awk';

  /** A scratch root like the image's, the seed's files read back out of the qcow2 seed. */
  async function scene(authorizedKeys = keys): Promise<{ root: string; seedDir: string; reader: string }> {
    const dir = mkdtempSync(path.join(tmp, 'scene-'));
    const seed = path.join(dir, 'seed.qcow2');
    await writeNocloudSeed({ instanceId: 'p1-workers-0001', identity, authorizedKeys }, seed);
    expect(statSync(seed).mode & 0o777).toBe(0o600);
    const raw = path.join(dir, 'seed.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', seed, raw]);
    expect(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', raw], { encoding: 'utf8' }).trim()).toBe('CIDATA');
    const seedDir = path.join(dir, 'cidata');
    await fs.mkdir(seedDir);
    for (const name of ['meta-data', 'user-data']) {
      execFileSync('mcopy', ['-i', raw, `::${name}`, path.join(seedDir, name)], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    }
    const { root, lib } = await scratchRoot(dir);
    await fs.writeFile(path.join(root, 'root/.ssh/authorized_keys'), 'ssh-ed25519 AAAAbaked image-key\n', { mode: 0o600 });
    return { root, seedDir, reader: path.join(lib, 'metadata.d', '10-nocloud') };
  }

  function runReader(s: { root: string; seedDir: string; reader: string }) {
    // The image's awk is mawk: put it first on PATH as `awk`.
    const bin = path.join(path.dirname(s.reader), '..', 'bin');
    require('node:fs').mkdirSync(bin, { recursive: true });
    const link = path.join(bin, 'awk');
    if (!require('node:fs').existsSync(link)) require('node:fs').symlinkSync(execFileSync('sh', ['-c', `command -v ${awk}`], { encoding: 'utf8' }).trim(), link);
    return spawnSync('dash', [s.reader], {
      encoding: 'utf8',
      env: { PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin`, KUBEDOS_ROOT: s.root, KUBEDOS_CIDATA_DIR: s.seedDir, TMPDIR: path.join(s.root, 'run') },
    });
  }

  test('applies hostname, host key (0600, matching the recorded fingerprint), authorized keys and machine-id', async () => {
    const s = await scene();
    const r = runReader(s);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const at = (p: string) => readFileSync(path.join(s.root, p), 'utf8');
    expect(at('etc/hostname')).toBe('worker-0001\n');
    expect(at('proc/sys/kernel/hostname')).toBe('worker-0001');
    expect(at('etc/hosts')).toBe('127.0.0.1\tlocalhost\n127.0.1.1\tworker-0001\n::1\tlocalhost\n');
    expect(at('etc/ssh/ssh_host_ed25519_key')).toBe(identity.hostKeyPrivate);
    expect(statSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key')).mode & 0o777).toBe(0o600);
    expect(at('etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${identity.hostKeyPublic}\n`);
    const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(s.root, 'etc/ssh/ssh_host_ed25519_key.pub')], { encoding: 'utf8' });
    expect(fp).toContain(identity.hostKeyFingerprint);
    expect(at('etc/ssh/sshd_config.d/05-kubedos-hostkeys.conf')).toMatch(/^HostKey \/etc\/ssh\/ssh_host_ed25519_key$/m);
    expect(at('etc/ssh/sshd_config.d/05-kubedos-hostkeys.conf').match(/^HostKey/gm)).toHaveLength(1);
    expect(at('root/.ssh/authorized_keys')).toBe(`ssh-ed25519 AAAAbaked image-key\n${keys[0]}\n${keys[1]}\n`);
    expect(at('etc/machine-id')).toBe(`${identity.machineId}\n`);
    expect(statSync(path.join(s.root, 'etc/machine-id')).mode & 0o777).toBe(0o444);
    expect(at('var/lib/kubedos/instance-id')).toBe('p1-workers-0001\n');
    // First boot's other readers are then skipped.
    expect(at('var/lib/kubedos/identity-applied')).toBe('p1-workers-0001\n');
    expect(r.stdout).toContain(`kubedos: nocloud: machine-id ${identity.machineId}`);
    expect(r.stdout).toContain('kubedos: nocloud: hostname worker-0001');
    // Nothing of the seed is left in the scratch /run.
    expect(await fs.readdir(path.join(s.root, 'run'))).toEqual([]);

    // A second run (first boot retried) changes nothing and adds no duplicate key.
    await fs.chmod(path.join(s.root, 'etc/machine-id'), 0o644);
    const again = runReader(s);
    expect(again.status).toBe(0);
    expect(at('root/.ssh/authorized_keys')).toBe(`ssh-ed25519 AAAAbaked image-key\n${keys[0]}\n${keys[1]}\n`);
  });

  test('a value of more than one line where one is expected (a hostname as a block) is refused', async () => {
    const s = await scene([]);
    const userData = path.join(s.seedDir, 'user-data');
    const text = readFileSync(userData, 'utf8');
    expect(text).toMatch(/^hostname: .*$/m);
    await fs.writeFile(userData, text.replace(/^hostname: .*$/m, 'hostname: |\n  worker-0001\n  evil.example'));
    const r = runReader(s);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toContain('kubedos: nocloud: error: hostname holds more than one line');
    expect(require('node:fs').existsSync(path.join(s.root, 'var/lib/kubedos/identity-applied'))).toBe(false);
  });

  test('a public key that does not match the private key is refused and no key is left', async () => {
    const s = await scene([]);
    const other = generateIdentity('other');
    const userData = path.join(s.seedDir, 'user-data');
    await fs.writeFile(userData, readFileSync(userData, 'utf8').replace(identity.hostKeyPublic, other.hostKeyPublic));
    const r = runReader(s);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toContain('ssh_keys.ed25519_public does not match its private key');
    expect(require('node:fs').existsSync(path.join(s.root, 'etc/ssh/ssh_host_ed25519_key'))).toBe(false);
  });
});
