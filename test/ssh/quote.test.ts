/** Argv quoting for the remote shell, checked through the real POSIX shells installed here. */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { InvalidArgvError } from '../../src/errors';
import { quoteArg, quoteArgv, remoteCommand } from '../../src/ssh';
import { injectionCorpus } from '../support/injection-corpus';

const run = promisify(execFile);
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'kubedos-quote-'));
  writeFileSync(path.join(tmp, 'a-file-to-glob'), ''); // so an unquoted * or ? would expand
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('quoting leaves plain words readable and single-quotes everything else', () => {
  expect(quoteArgv(['qemu-img', 'create', '-f', 'qcow2', '/var/lib/x.qcow2', '10G'])).toBe('qemu-img create -f qcow2 /var/lib/x.qcow2 10G');
  expect(quoteArg('')).toBe("''");
  expect(quoteArg('a b')).toBe("'a b'");
  expect(quoteArg("it's")).toBe("'it'\\''s'");
  expect(quoteArg('A=b')).toBe("'A=b'");
  expect(quoteArg('~')).toBe("'~'");
  expect(remoteCommand(['sha256sum', '--', '/x y'])).toBe("exec sha256sum -- '/x y'");
});

test('NUL bytes, empty argv and option-like program names are refused with InvalidArgvError', () => {
  expect(() => quoteArgv(['printf', 'a\0b'])).toThrow(InvalidArgvError);
  expect(() => quoteArgv(['printf', 'a\0b'])).toThrow(/argv\[1\].*NUL byte/);
  expect(() => quoteArgv([])).toThrow(/empty argv/);
  expect(() => remoteCommand(['-a', 'sh', '-c', 'id'])).toThrow(/argv\[0\] "-a" starts with "-"/);
  expect(() => remoteCommand([''])).toThrow(InvalidArgvError);
});

test.each(['/bin/sh', '/bin/dash', '/bin/bash'])('%s -c sees exactly the argv elements of the injection corpus', async (shell) => {
  const canary = path.join(tmp, `canary-${path.basename(shell)}`);
  const corpus = injectionCorpus(canary);
  // As sshd does: the login shell runs the one command string with -c, in a directory with files to glob.
  const { stdout } = await run(shell, ['-c', remoteCommand(['printf', '%s\\0', ...corpus])], { cwd: tmp, encoding: 'utf8' });
  expect(stdout.split('\0').slice(0, -1)).toEqual(corpus);
  expect(existsSync(canary)).toBe(false);
});
