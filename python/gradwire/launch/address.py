"""Which interface this node's workers listen on: the one that routes to the master.

Peers reach a worker at the address it advertises, so it must be an address they can route
to: the interface the kernel would use to reach the rendezvous host is the one that faces the
other nodes (not docker0, not a VPN). A loopback address is only ever right when the whole
job is on one host. GRADWIRE_SOCKET_IFNAME overrides the choice.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from gradwire.launch.errors import LaunchError

_SIOCGIFADDR = 0x8915


@dataclass
class Choice:
    ifname: str
    address: str
    reason: str


def ipv4_addresses() -> Dict[str, str]:
    """Interface name -> its (first) IPv4 address, for interfaces that have one."""
    out: Dict[str, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)
            except OSError:
                continue
            out[name] = socket.inet_ntoa(res[20:24])
    return out


def ipv6_addresses() -> Dict[str, str]:
    out: Dict[str, str] = {}
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr, _, _, scope, _, name = line.split()
                if scope == "20":  # link-local: not routable to other nodes
                    continue
                addr = ipaddress.IPv6Address(bytes.fromhex(hexaddr))
                out.setdefault(name, str(addr))
    except OSError:
        pass
    return out


def _is_loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr.split("%")[0]).is_loopback


def resolve_all(host: str) -> List[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise LaunchError(f"cannot resolve the master address {host!r}: {e}", exit_code=1) from None
    seen: List[str] = []
    for info in infos:
        a = info[4][0]
        if a not in seen:
            seen.append(a)
    return seen


def source_address(dest: str) -> Optional[str]:
    """The local address the kernel picks to reach `dest` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in dest else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((dest, 9))
            return s.getsockname()[0]
    except OSError:
        return None


def interface_of(addr: str) -> Optional[str]:
    table = ipv6_addresses() if ":" in addr else ipv4_addresses()
    for name, a in table.items():
        if a == addr:
            return name
    return None


def _default_route_interface() -> Optional[str]:
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return None


def choose(master_addr: str, multi_host: bool, env: Mapping[str, str]) -> Choice:
    override = env.get("GRADWIRE_SOCKET_IFNAME", "")
    v4, v6 = ipv4_addresses(), ipv6_addresses()
    if override:
        addr = v4.get(override) or v6.get(override)
        if addr is None:
            names = ", ".join(sorted(set(v4) | set(v6)))
            raise LaunchError(
                f"GRADWIRE_SOCKET_IFNAME={override}: no such interface with an IP address "
                f"(interfaces here: {names})"
            )
        if multi_host and _is_loopback(addr):
            raise LaunchError(
                f"GRADWIRE_SOCKET_IFNAME={override} is a loopback interface, but the job spans "
                "several hosts: peers elsewhere cannot reach it"
            )
        return Choice(override, addr, "GRADWIRE_SOCKET_IFNAME")
    targets = resolve_all(master_addr)
    if multi_host:
        remote = [a for a in targets if not _is_loopback(a)]
        if not remote:
            raise LaunchError(
                f"the master address {master_addr!r} resolves to loopback ({', '.join(targets)}) "
                "but the job spans several hosts: other nodes cannot reach it. Use a name or "
                "address that the other nodes resolve to this host (--master-addr)"
            )
        targets = remote
    for dest in targets:
        src = source_address(dest)
        if src is None:
            continue
        if multi_host and _is_loopback(src):
            continue  # the master is this host; pick the interface holding its address below
        name = interface_of(src)
        if name:
            return Choice(name, src, f"routes to {master_addr} ({dest})")
    if multi_host:
        for dest in targets:  # the master's address is one of ours: its interface
            name = interface_of(dest)
            if name:
                return Choice(name, dest, f"holds the master address {dest}")
        name = _default_route_interface()
        if name and name in v4:
            return Choice(name, v4[name], "default route (no route to the master found)")
        raise LaunchError(
            f"no interface routes to the master {master_addr} ({', '.join(targets)}); "
            "set GRADWIRE_SOCKET_IFNAME"
        )
    lo = next((n for n, a in v4.items() if _is_loopback(a)), "lo")
    return Choice(lo, v4.get(lo, "127.0.0.1"), "the whole job is on this host")
