'use strict';
/**
 * MMDS STAND-IN (Firecracker cannot run here: no /dev/kvm). Answers like Firecracker's MMDS V2
 * in its IMDS (text) form: PUT /latest/api/token with X-metadata-token-ttl-seconds (1..21600)
 * gives a token; a GET must carry it (else 401); a string leaf is returned as is, an object as the
 * list of its keys, anything else 404. Plain JavaScript so QEMU's guestfwd can start it per
 * connection (`node mmds-standin.cjs DOC.json TOKEN`: one request on stdin/stdout); the unit tests
 * use `answer` behind node:http.
 */
const fs = require('node:fs');
const { serveOnce } = require('./serve-once.cjs');

function answer(doc, token, method, url, headers) {
  const path = url.split('?')[0];
  if (path === '/latest/api/token') {
    if (method !== 'PUT') return { status: 405, body: '' };
    const ttl = Number(headers['x-metadata-token-ttl-seconds']);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400, body: 'X-metadata-token-ttl-seconds must be 1..21600' };
    return { status: 200, body: token };
  }
  if (method !== 'GET') return { status: 405, body: '' };
  if (headers['x-metadata-token'] !== token) return { status: 401, body: '' };
  let node = doc;
  for (const part of path.split('/').filter(Boolean)) {
    if (node === null || typeof node !== 'object' || !(part in node)) return { status: 404, body: '' };
    node = node[part];
  }
  if (typeof node === 'string') return { status: 200, body: node };
  if (node && typeof node === 'object') return { status: 200, body: Object.keys(node).map((k) => (typeof node[k] === 'object' ? `${k}/` : k)).join('\n') };
  return { status: 404, body: '' };
}

/** One request from stdin, its response to stdout, then exit (the guest's connection closes). */
function serveDocument(docFile, token) {
  const doc = JSON.parse(fs.readFileSync(docFile, 'utf8'));
  serveOnce((method, url, headers) => {
    const { status, body } = answer(doc, token, method, url, headers);
    return { status, headers: { 'Content-Type': 'text/plain' }, body };
  });
}

if (require.main === module) serveDocument(process.argv[2], process.argv[3]);
module.exports = { answer };
