/**
 * Turning an argv array into the one command string the SSH protocol carries. sshd hands that
 * string to the user's login shell (`$SHELL -c`), so every element is quoted for POSIX sh: inside
 * single quotes nothing is special except the closing quote, which is written as '\''. A NUL byte
 * cannot be passed through a C string at all, so it is refused rather than silently truncated.
 */
import { InvalidArgvError } from '../errors';

// Words made only of these need no quotes in any POSIX shell. `=` is left out (an unquoted first
// word with `=` is an assignment), as are `~` (tilde expansion) and `{}` (bash brace expansion).
const SAFE_WORD = /^[A-Za-z0-9_@%+:,./-]+$/;

/** One argument quoted for POSIX sh. */
export function quoteArg(arg: string): string {
  if (arg.includes('\0')) throw new InvalidArgvError(`argument ${JSON.stringify(arg)} contains a NUL byte, which cannot be passed to a remote program`);
  if (SAFE_WORD.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** An argv array as one POSIX sh command line whose words are exactly the array's elements. */
export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) throw new InvalidArgvError('empty argv');
  return argv
    .map((arg, index) => {
      if (typeof arg !== 'string') throw new InvalidArgvError(`argv[${index}] is ${typeof arg}, not a string`);
      try {
        return quoteArg(arg);
      } catch (err) {
        if (err instanceof InvalidArgvError) throw new InvalidArgvError(`argv[${index}]: ${err.detail}`);
        throw err;
      }
    })
    .join(' ');
}

/**
 * The command string for running argv remotely: `exec` replaces the login shell with the program,
 * so the exit status and a terminating signal are the program's own and a signal sent over the
 * channel reaches it directly. A program name starting with `-` is refused: `exec` would read it
 * as its own option (bash's `exec -a name …` runs a different program).
 */
export function remoteCommand(argv: readonly string[]): string {
  const program = argv[0];
  if (program === undefined || program === '') throw new InvalidArgvError('argv[0] (the program to run) is empty');
  if (program.startsWith('-')) throw new InvalidArgvError(`argv[0] ${JSON.stringify(program)} starts with "-"; it must name the program to run`);
  return `exec ${quoteArgv(argv)}`;
}
