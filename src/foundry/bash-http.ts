/**
 * The HTTP client the image's first-boot readers embed: bash on /dev/tcp (the image has no HTTP
 * client), one request per run of the reader as `"$0" FLAG ARG...` under `timeout`. This renders
 * that `if [ "${1:-}" = FLAG ]; then … fi` block; each reader says only what differs (its log tag,
 * its arguments, the headers it sends, what it requires of the answer).
 *
 * The child writes the request, reads the status line and headers, writes the body (Content-Length
 * bytes, or to the end when the answer has none and `untilClose` is set) to `$out`, and exits 0 for
 * 200, 4 for 404 (unless `notFound` is false) and 1 otherwise, with the status on stderr.
 */

/** A printf format (without the trailing CRLF) and its bash arguments, e.g. ['Host: %s', '"$addr"']. */
export type BashHttpLine = readonly [format: string, ...args: string[]];

export interface BashHttpClient {
  /** Log tag: errors read `kubedos: <tag>: …`. */
  readonly tag: string;
  /** The option that runs the client: `--request` unless said. */
  readonly flag?: string;
  /** Names given to "$2", "$3", …; must include `path` and `out` (and `body` with `body`). */
  readonly params: readonly string[];
  /** The bash variable holding the address to connect to (the port is `$port`). */
  readonly host: string;
  /** The method: a bash word (`$method`, one of the params) or a literal such as `GET`. */
  readonly method: string;
  /** The HTTP version of the request line. */
  readonly version?: '1.0' | '1.1';
  /** The headers sent, in order, the first of them Host. */
  readonly headers: readonly BashHttpLine[];
  /** More headers come as the arguments after the params ("$@"). */
  readonly headerArgs?: boolean;
  /** The params include `body`: a file to send, or `-` for none (Content-Length follows the headers). */
  readonly body?: boolean;
  /** Without Content-Length, read the body until the server closes; otherwise it is empty. */
  readonly untilClose?: boolean;
  /** Exit 4 for 404 (default); false: 404 is an error like any other status. */
  readonly notFound?: boolean;
  /** A header the answer must carry on 200, or the request fails with `message`. */
  readonly require?: { readonly header: string; readonly variable: string; readonly value: string; readonly message: string };
}

const crlf = '\\r\\n';

function printfLine(format: string, args: readonly string[]): string {
  return `printf '${format}'${args.map((a) => ` ${a}`).join('')}`;
}

/** The bash block that runs one request when the reader is called with `flag`. */
export function bashHttpClient(c: BashHttpClient): string {
  const flag = c.flag ?? '--request';
  const method = c.method.startsWith('$') ? '%s' : c.method;
  const methodArgs = c.method.startsWith('$') ? [`"${c.method}"`] : [];
  const start: BashHttpLine = [`${method} %s HTTP/${c.version ?? '1.1'}`, ...methodArgs, '"$path"'];
  const lines = [start, ...c.headers];
  const shift = c.params.length + 1;
  const out: string[] = [
    `if [ "\${1:-}" = ${flag} ]; then`,
    `  ${c.params.map((p, i) => `${p}=$${i + 2}`).join(' ')}`,
  ];
  if (c.headerArgs) out.push(`  shift ${shift}`);
  out.push(`  exec 3<>"/dev/tcp/$${c.host}/$port"`);
  if (c.headerArgs || c.body) {
    out.push('  {');
    for (const [format, ...args] of lines) out.push(`    ${printfLine(format + crlf, args)}`);
    if (c.headerArgs) out.push(`    for h in "$@"; do printf '%s${crlf}' "$h"; done`);
    if (c.body) {
      out.push(
        `    if [ "$body" = - ]; then printf 'Content-Length: 0${crlf}${crlf}'; else printf 'Content-Length: %s${crlf}${crlf}' "$(wc -c < "$body")"; cat "$body"; fi`,
      );
    } else {
      out.push(`    printf '${crlf}'`);
    }
    out.push('  } >&3');
  } else {
    const format = lines.map(([f]) => f + crlf).join('') + crlf;
    out.push(`  ${printfLine(format, lines.flatMap(([, ...args]) => args))} >&3`);
  }
  out.push('  IFS= read -r status <&3');
  const lengthCase = 'content-length:*) len=${line#*:}; len=${len//[!0-9]/} ;;';
  out.push(`  len=${c.untilClose ? '""' : '0'}${c.require ? ` ${c.require.variable}=""` : ''}`);
  out.push('  while IFS= read -r line <&3; do', "    line=${line%$'\\r'}", '    [ -n "$line" ] || break');
  if (c.require) {
    const v = c.require.variable;
    out.push(
      '    case ${line,,} in',
      `      ${lengthCase}`,
      `      ${c.require.header.toLowerCase()}:*) ${v}=\${line#*:}; ${v}=\${${v}// /} ;;`,
      '    esac',
    );
  } else {
    out.push(`    case \${line,,} in ${lengthCase} esac`);
  }
  out.push('  done');
  out.push(
    c.untilClose
      ? '  if [ -n "$len" ]; then head -c "$len" <&3 > "$out"; else cat <&3 > "$out"; fi'
      : '  head -c "${len:-0}" <&3 > "$out"',
  );
  out.push('  exec 3<&-', '  case $status in');
  const ok = c.require
    ? `[ "$${c.require.variable}" = ${c.require.value} ] || { echo "kubedos: ${c.tag}: ${c.require.message}" >&2; exit 1; }; exit 0`
    : 'exit 0';
  out.push(`    "HTTP/1."?" 200"*) ${ok} ;;`);
  if (c.notFound ?? true) out.push('    "HTTP/1."?" 404"*) exit 4 ;;');
  out.push(`    *) echo "kubedos: ${c.tag}: ${c.method} $path: \${status%$'\\r'}" >&2; exit 1 ;;`, '  esac', 'fi');
  return out.join('\n');
}
