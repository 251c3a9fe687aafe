/**
 * The image's own NoCloud reader: applies a node's deploy-time identity from a `cidata` seed at
 * first boot, before sshd, without cloud-init (which costs tens of seconds under TCG). It reads
 * the same standard files a stock cloud-init image reads — `meta-data` and a `#cloud-config`
 * `user-data` on a vfat or iso9660 filesystem labelled CIDATA — and applies exactly the keys the
 * Foundry writes (src/targets/nocloud.ts):
 *
 * - hostname: user-data `hostname`, else meta-data `local-hostname` (/etc/hostname, the kernel,
 *   the 127.0.1.1 line of /etc/hosts);
 * - `ssh_keys`: `<type>_private` / `<type>_public` become /etc/ssh/ssh_host_<type>_key(.pub)
 *   (0600 / 0644), checked against each other, and sshd is told to offer only those keys;
 * - `ssh_authorized_keys`: appended to root's authorized_keys (missing ones only);
 * - `write_files` (path, content, permissions, encoding b64): e.g. /etc/machine-id.
 *
 * The YAML is read by a small awk program (the image has no python): block mappings and
 * sequences, plain / 'single' / "double" scalars and `|` blocks; anything else is skipped, never
 * guessed at. Each scalar lands in its own file named by its path (`ssh_keys.ed25519_private`,
 * `write_files.0.path`), so no value ever passes through shell word splitting or eval.
 *
 * Both scripts are POSIX (dash, mawk). Two variables exist for the unit tests only:
 * KUBEDOS_CIDATA_DIR (read the seed files from a directory instead of finding and mounting the
 * device) and KUBEDOS_ROOT (prefix of every path written).
 */

/** Path of the awk parser in the image; the reader finds it relative to itself. */
export const NOCLOUD_AWK_PATH = '/usr/lib/kubedos/nocloud.awk';
/** Path of the reader: a metadata.d hook of kubedos-firstboot. */
export const NOCLOUD_READER_PATH = '/usr/lib/kubedos/metadata.d/10-nocloud';

export const NOCLOUD_AWK = String.raw`# KubeDos: the YAML subset of NoCloud meta-data / #cloud-config user-data, one file per scalar.
# Usage: awk -v out=DIR -f nocloud.awk FILE. Writes DIR/<path> for every scalar, e.g.
# DIR/hostname, DIR/ssh_keys.ed25519_private, DIR/ssh_authorized_keys.0, DIR/write_files.0.path.
# Flow collections, anchors, tags and folded blocks are skipped.

# A scalar's value: quoted ones up to their closing quote (a comment may follow), plain ones up
# to a " #" comment.
function unquote(v,    q, i, c, r, n) {
  q = substr(v, 1, 1); r = ""; n = length(v)
  if (q == "'") {
    for (i = 2; i <= n; i++) {
      c = substr(v, i, 1)
      if (c == "'") {
        if (substr(v, i + 1, 1) != "'") return r
        i++
      }
      r = r c
    }
    return r
  }
  if (q == "\"") {
    for (i = 2; i <= n; i++) {
      c = substr(v, i, 1)
      if (c == "\"") return r
      if (c == "\\") {
        i++; c = substr(v, i, 1)
        if (c == "n") c = "\n"; else if (c == "t") c = "\t"
      }
      r = r c
    }
    return r
  }
  sub(/[ \t]+#.*$/, "", v); sub(/[ \t]+$/, "", v)
  return v
}

function path_of(d,    p, i) {
  p = ""
  for (i = 1; i <= d; i++) p = (p == "") ? name[i] : p "." name[i]
  return p
}

function child(k,    p) { p = path_of(depth); return (p == "") ? k : p "." k }

function emit(p, v,    f) { f = out "/" p; printf "%s", v > f; close(f) }

function push(n, k, kind) { depth++; ind[depth] = n; name[depth] = k; type[depth] = kind }

function finish_block(    v) {
  v = blockval
  while (length(v) > 0 && substr(v, length(v)) == "\n") v = substr(v, 1, length(v) - 1)
  if (!blockstrip && v != "") v = v "\n"
  emit(blockpath, v)
  inblock = 0
}

function handle(n, t,    k, v, p, rest) {
  if (t == "-" || substr(t, 1, 2) == "- ") {
    # A sequence item belongs to the nearest key above it (indented less, or as much).
    while (depth > 0 && (ind[depth] > n || (ind[depth] == n && type[depth] == "item"))) depth--
    p = path_of(depth)
    push(n, count[p] + 0, "item")
    count[p]++
    rest = substr(t, 2); sub(/^ +/, "", rest)
    if (rest == "") return
    if (rest ~ /^[A-Za-z0-9_-]+:( |$)/) { handle(n + length(t) - length(rest), rest); return }
    if (rest !~ /^[&*!|>\[{]/) emit(path_of(depth), unquote(rest))
    return
  }
  if (t !~ /^[A-Za-z0-9_-]+:( |$)/) return
  k = t; sub(/:.*$/, "", k)
  v = substr(t, length(k) + 2); sub(/^[ \t]+/, "", v)
  while (depth > 0 && ind[depth] >= n) depth--
  if (v == "" || v ~ /^#/) { push(n, k, "key"); return }
  if (v ~ /^\|[-+]?([ \t]+#.*)?$/) {
    inblock = 1; blockpath = child(k); blockind = n; blockcol = -1; blockval = ""
    blockstrip = (substr(v, 2, 1) == "-")
    return
  }
  if (v ~ /^[&*!>\[{]/) return
  emit(child(k), unquote(v))
}

{
  line = $0; sub(/\r$/, "", line)
  if (inblock) {
    if (line ~ /^[ \t]*$/) { if (blockcol >= 0) blockval = blockval "\n"; next }
    n = match(line, /[^ ]/) - 1
    if (n > blockind) {
      if (blockcol < 0) blockcol = n
      blockval = blockval substr(line, blockcol + 1) "\n"
      next
    }
    finish_block()
  }
  if (line ~ /^[ \t]*(#.*)?$/ || line ~ /^(---|\.\.\.)/) next
  n = match(line, /[^ ]/) - 1
  handle(n, substr(line, n + 1))
}

END { if (inblock) finish_block() }
`;

/** A literal `$` before `{` in the script below, where a template literal would start its own `${…}`. */
const $ = '$';

export const NOCLOUD_READER = String.raw`#!/bin/sh
# KubeDos NoCloud reader (metadata.d hook of kubedos-firstboot; runs before sshd). Applies the
# node identity of a cidata seed: hostname, SSH host keys, root's authorized keys, write_files.
# No seed: nothing to do (the node then makes its own host keys). See src/foundry/nocloud-reader.ts.
set -e
root=$KUBEDOS_ROOT
seed=$KUBEDOS_CIDATA_DIR
tmp=$TMPDIR
[ -n "$tmp" ] || tmp=/run
set -u
# Under TCG every process costs about a tenth of a second of the first boot: values are read
# with the shell's own builtins wherever a command substitution and a cat would do.
case $0 in */*) here=${$}{0%/*}/.. ;; *) here=.. ;; esac
say() { echo "kubedos: nocloud: $*"; }
fail() { echo "kubedos: nocloud: error: $*"; exit 1; }

work=$(mktemp -d "$tmp/kubedos-nocloud.XXXXXX")
mnt=""
cleanup() {
  if [ -n "$mnt" ]; then umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$seed" ]; then
  dev=""
  # udev's link is there by now (the root filesystem was found the same way); a full probe is slow under TCG.
  for label in CIDATA cidata; do
    if [ -e "/dev/disk/by-label/$label" ]; then dev=$(readlink -f "/dev/disk/by-label/$label"); break; fi
  done
  if [ -z "$dev" ]; then
    for label in CIDATA cidata; do
      dev=$(blkid -c /dev/null -o device -t "LABEL=$label" 2>/dev/null | head -n 1) || dev=""
      if [ -n "$dev" ]; then break; fi
    done
  fi
  if [ -z "$dev" ]; then say "no cidata seed"; exit 0; fi
  mnt=$(mktemp -d /run/kubedos-cidata.XXXXXX)
  mount -o ro "$dev" "$mnt" || fail "cannot mount the seed $dev"
  seed=$mnt
  say "seed on $dev"
fi

[ -f "$seed/meta-data" ] || fail "the seed has no meta-data"
mkdir "$work/meta" "$work/user"
awk -v out="$work/meta" -f "$here/nocloud.awk" "$seed/meta-data"
if [ -f "$seed/user-data" ]; then
  first=
  IFS= read -r first < "$seed/user-data" || :
  if [ "${$}{first%"${$}{first#'#cloud-config'}"}" = '#cloud-config' ]; then
    awk -v out="$work/user" -f "$here/nocloud.awk" "$seed/user-data"
  else
    say "user-data is not #cloud-config: ignored"
  fi
fi
val() { if [ -f "$1" ]; then cat "$1"; fi; }
# Set the variable named $1 to the one-line value in file $2 (empty when absent), without a
# process; a value of more than one line is refused.
one_line() {
  _v=
  if [ -f "$2" ]; then
    {
      IFS= read -r _v || :
      while IFS= read -r _more || [ -n "$_more" ]; do
        [ -z "$_more" ] || fail "${$}{2##*/} holds more than one line"
      done
    } < "$2"
  fi
  eval "$1=\$_v"
}

# Hostname.
one_line host "$work/user/hostname"
[ -n "$host" ] || one_line host "$work/meta/local-hostname"
if [ -n "$host" ]; then
  case $host in
    *[!A-Za-z0-9.-]* | -* | .* | *..*) fail "invalid hostname: $host" ;;
  esac
  short=${$}{host%%.*}
  names=$short
  if [ "$host" != "$short" ]; then names="$host $short"; fi
  printf '%s\n' "$short" > "$root/etc/hostname"
  printf '%s' "$short" > "$root/proc/sys/kernel/hostname"
  if [ -f "$root/etc/hosts" ]; then
    awk -v names="$names" '
      /^127\.0\.1\.1[ \t]/ { if (!done) print "127.0.1.1\t" names; done = 1; next }
      { print }
      END { if (!done) print "127.0.1.1\t" names }' "$root/etc/hosts" > "$work/hosts"
    cat "$work/hosts" > "$root/etc/hosts"
  fi
  say "hostname $short"
fi

# SSH host keys: exactly the ones given, and sshd offers only those.
keys=""
for type in ed25519 ecdsa rsa; do
  priv="$work/user/ssh_keys.$type"_private
  [ -f "$priv" ] || continue
  key="$root/etc/ssh/ssh_host_$type"_key
  rm -f "$key" "$key.pub"
  (umask 077 && cat "$priv" > "$key")
  chmod 600 "$key"
  derived=$(ssh-keygen -y -f "$key") || fail "ssh_keys.$type"_private" is not a usable private key"
  one_line given "$work/user/ssh_keys.$type"_public
  if [ -n "$given" ]; then
    # Type and key, without the comment: split by the shell (no globbing), not by awk.
    set -f
    # shellcheck disable=SC2086
    set -- $given; given_key="$1 ${$}{2-}"
    # shellcheck disable=SC2086
    set -- $derived; derived_key="$1 ${$}{2-}"
    set +f
    if [ "$given_key" != "$derived_key" ]; then
      rm -f "$key"
      fail "ssh_keys.$type"_public" does not match its private key"
    fi
    printf '%s\n' "$given" > "$key.pub"
  else
    printf '%s\n' "$derived" > "$key.pub"
  fi
  chmod 644 "$key.pub"
  keys="$keys $type"
done
if [ -n "$keys" ]; then
  mkdir -p "$root/etc/ssh/sshd_config.d"
  {
    echo "# Host keys from the node's cidata seed (KubeDos NoCloud reader): offer only these."
    for type in $keys; do echo "HostKey /etc/ssh/ssh_host_$type"_key; done
  } > "$root/etc/ssh/sshd_config.d/05-kubedos-hostkeys.conf"
  say "host keys:$keys"
fi

# Root's authorized keys: add the missing ones.
added=0
for f in "$work/user"/ssh_authorized_keys.*; do
  [ -f "$f" ] || continue
  one_line line "$f"
  [ -n "$line" ] || continue
  mkdir -p "$root/root/.ssh"
  chmod 700 "$root/root/.ssh"
  ak="$root/root/.ssh/authorized_keys"
  [ -f "$ak" ] || (umask 077 && : > "$ak")
  if ! grep -qxF -e "$line" "$ak"; then printf '%s\n' "$line" >> "$ak"; added=$((added + 1)); fi
  chmod 600 "$ak"
done
if [ "$added" -gt 0 ]; then say "authorized keys: $added added"; fi

# write_files (the machine-id among them).
one_line old_id "$root/etc/machine-id"
i=0
while [ -f "$work/user/write_files.$i.path" ]; do
  one_line p "$work/user/write_files.$i.path"
  case $p in
    /*) ;;
    *) fail "write_files.$i.path is not absolute: $p" ;;
  esac
  case /$p/ in
    */../* | */./*) fail "write_files.$i.path is not a plain path: $p" ;;
  esac
  one_line perm "$work/user/write_files.$i.permissions"
  [ -n "$perm" ] || perm=0644
  case $perm in
    *[!0-7]*) fail "write_files.$i.permissions is not octal: $perm" ;;
  esac
  content="$work/user/write_files.$i.content"
  [ -f "$content" ] || : > "$content"
  mkdir -p "$root${$}{p%/*}"
  one_line encoding "$work/user/write_files.$i.encoding"
  case $encoding in
    "" | text/plain) cat "$content" > "$root$p" ;;
    b64 | base64) base64 -d "$content" > "$root$p" ;;
    *) fail "write_files.$i.encoding is not supported" ;;
  esac
  chmod "$perm" "$root$p"
  say "wrote $p"
  i=$((i + 1))
done
one_line new_id "$root/etc/machine-id"
if [ -n "$new_id" ]; then
  say "machine-id $new_id"
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    say "the running system keeps machine-id $old_id until it reboots"
  fi
fi

one_line iid "$work/meta/instance-id"
mkdir -p "$root/var/lib/kubedos"
if [ -n "$iid" ]; then printf '%s\n' "$iid" > "$root/var/lib/kubedos/instance-id"; fi
# The first boot's other readers need not look: a machine has one platform, and it spoke.
printf '%s\n' "$iid" > "$root/var/lib/kubedos/identity-applied"
say "applied instance-id $iid"
`;
