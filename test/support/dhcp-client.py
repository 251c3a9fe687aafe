#!/usr/bin/env python3
"""A DHCP client for one DISCOVER/OFFER exchange, as a PXE or iPXE ROM starts it (RFC 2131/2132):
a DHCPDISCOVER from MAC, broadcast on IFACE, options 93 (client architecture) and, for iPXE, 175
(its encapsulated options, what servers match on). Prints the OFFER as JSON
({"yiaddr", "siaddr", "file", "options": {code: hex}}), or {"offer": null} when none came.
Also a TFTP read of one block (RFC 1350), to see what a PXE ROM would load.

  dhcp-client.py discover IFACE MAC [--ipxe] [--arch N] [--timeout S] [--request]
(--request: then DHCPREQUEST the offered address, and print {"ack": address} when acknowledged)
  dhcp-client.py tftp IFACE SERVER FILE
Run inside the test's network namespace (IFACE has no address of its own)."""
import json
import random
import socket
import struct
import subprocess
import sys
import time

SO_BINDTODEVICE = 25


def discover(iface, mac, ipxe, arch, timeout, request=False):
    xid = random.getrandbits(32)
    chaddr = bytes(int(b, 16) for b in mac.split(':'))
    # op htype hlen hops xid secs flags(broadcast) ciaddr yiaddr siaddr giaddr chaddr sname file
    packet = struct.pack('!BBBBIHH4s4s4s4s16s64s128s', 1, 1, 6, 0, xid, 0, 0x8000, b'\0' * 4, b'\0' * 4, b'\0' * 4, b'\0' * 4, chaddr, b'', b'')
    options = b'\x63\x82\x53\x63' + bytes([53, 1, 1])  # magic cookie, DHCPDISCOVER
    options += bytes([93, 2]) + struct.pack('!H', arch)
    options += bytes([55, 4, 1, 3, 66, 67])  # ask for netmask, router, tftp server, boot file
    if ipxe:
        options += bytes([175, 3, 0x13, 1, 1])  # iPXE: an encapsulated option (HTTP supported)
    options += bytes([255])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, iface.encode())
    s.bind(('0.0.0.0', 68))
    s.settimeout(0.5)
    deadline = time.time() + timeout
    sent = 0
    while time.time() < deadline:
        if time.time() >= sent + 1:
            s.sendto(packet + options, ('255.255.255.255', 67))
            sent = time.time()
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            continue
        if len(data) < 240 or struct.unpack('!I', data[4:8])[0] != xid or data[0] != 2:
            continue
        yiaddr = socket.inet_ntoa(data[16:20])
        siaddr = socket.inet_ntoa(data[20:24])
        boot_file = data[108:236].split(b'\0')[0].decode()
        opts = {}
        i = 240
        while i < len(data) and data[i] != 255:
            if data[i] == 0:
                i += 1
                continue
            code, length = data[i], data[i + 1]
            opts[str(code)] = data[i + 2:i + 2 + length].hex()
            i += 2 + length
        if opts.get('53') == '05':
            return {'ack': yiaddr}
        if opts.get('53') != '02':
            continue
        if '67' in opts:  # the boot file as an option (asked for in 55) rather than in `file`
            boot_file = bytes.fromhex(opts['67']).rstrip(b'\0').decode()
        if not request:
            return {'yiaddr': yiaddr, 'siaddr': siaddr, 'file': boot_file, 'options': opts}
        # DHCPREQUEST for the offered address from that server: the server records a lease.
        options = b'\x63\x82\x53\x63' + bytes([53, 1, 3, 50, 4]) + data[16:20] + bytes([54, 4]) + bytes.fromhex(opts['54']) + bytes([255])
        sent = 0
        request = False
    return {'offer': None}


def tftp(iface, server, name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, iface.encode())
    s.settimeout(5)
    s.sendto(b'\0\x01' + name.encode() + b'\0octet\0', (server, 69))
    data, _ = s.recvfrom(1024)
    opcode, block = struct.unpack('!HH', data[:4])
    return {'opcode': opcode, 'block': block, 'data': data[4:].hex()}


def main():
    args = sys.argv[1:]
    if args[0] == 'discover':
        arch = int(args[args.index('--arch') + 1]) if '--arch' in args else 0
        timeout = float(args[args.index('--timeout') + 1]) if '--timeout' in args else 4
        print(json.dumps(discover(args[1], args[2], '--ipxe' in args, arch, timeout, '--request' in args)))
    elif args[0] == 'tftp':
        iface, server, name = args[1:4]
        # The interface needs an address to talk unicast TFTP.
        subprocess.run(['ip', 'addr', 'add', server.rsplit('.', 1)[0] + '.250/24', 'dev', iface], stderr=subprocess.DEVNULL, check=False)
        print(json.dumps(tftp(iface, server, name)))
    else:
        sys.exit('usage: dhcp-client.py discover|tftp ...')


if __name__ == '__main__':
    main()
