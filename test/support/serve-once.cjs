'use strict';
/**
 * The per-connection HTTP server of the metadata stand-ins (mmds-standin.cjs, imds-standin.cjs,
 * gce-standin/metadata.cjs) when QEMU's guestfwd starts one for each guest connection: read one
 * request from stdin, answer it on stdout, exit (the guest's connection closes). Plain
 * JavaScript, like them.
 */
const { STATUS_CODES } = require('node:http');

/**
 * `respond(method, url, headers)` (header names in lower case) gives `{ status, headers, body }`;
 * the response carries those headers and Content-Length (the body's: in its place when the headers name it,
 * else last).
 */
function serveOnce(respond) {
  let buf = '';
  process.stdin.setEncoding('latin1');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const [requestLine, ...lines] = buf.slice(0, end).split('\r\n');
    const [method, url] = requestLine.split(' ');
    const headers = {};
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const r = respond(method, url, headers);
    const bytes = Buffer.from(r.body, 'utf8');
    const head = Object.entries({ ...r.headers, 'Content-Length': bytes.length }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    process.stdout.write(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status]}\r\n${head}\r\n`);
    process.stdout.write(bytes, () => process.exit(0));
  });
}

module.exports = { serveOnce };
