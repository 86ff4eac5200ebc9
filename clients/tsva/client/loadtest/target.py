"""Where a load test may go: loopback only, unless the user says --allow-remote. A load test
against someone else's production server by a typo in --server is an outage."""
from __future__ import annotations

import ipaddress
import socket


class RemoteTargetError(ValueError):
    pass


def split_host(server: str) -> str | None:
    """Host part of a gRPC target: HOST:PORT, [V6]:PORT, ipv4:/ipv6:/dns: schemes; None for unix:."""
    target = server.strip()
    if target.startswith(("unix:", "unix-abstract:")):
        return None
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            break
    target = target.split(",")[0]
    if target.startswith("["):
        return target[1:target.index("]")] if "]" in target else target[1:]
    if target.count(":") > 1:  # a bare IPv6 address without a port
        return target
    return target.rsplit(":", 1)[0] if ":" in target else target


def is_loopback(server: str) -> bool:
    host = split_host(server)
    if host is None:
        return True  # unix sockets are local
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_target(server: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback(server):
        raise RemoteTargetError(
            f"--server {server}: not a loopback address; a load test can take a server down, so "
            f"remote targets need --allow-remote (only against servers you are allowed to load)")
