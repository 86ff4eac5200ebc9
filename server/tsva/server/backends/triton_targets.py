"""Triton targets (`--triton-urls`) and the server addresses behind them.

A target is HOST:PORT. A name may stand for several servers (a Kubernetes headless Service returns
one address per ready Triton pod), and one gRPC channel to such a name would talk to a single pod,
so the Triton backend resolves names itself, keeps one endpoint per address, and resolves again
from time to time to follow pods that come and go.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Awaitable, Callable, Iterable

# (host, port) -> ["ADDRESS:PORT", ...]; raises OSError when the name does not resolve.
Resolver = Callable[[str, int], Awaitable[list[str]]]


def parse_targets(urls: str | Iterable[str]) -> list[str]:
    """`HOST:PORT[,HOST:PORT...]` or a list of them -> list of HOST:PORT (IPv6 as [ADDR]:PORT)."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    targets = [u.strip() for u in items if u and u.strip()]
    for target in targets:
        host, port = split(target)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--triton-urls: {target!r} is not HOST:PORT")
    if not targets:
        raise ValueError("--triton-urls: no Triton endpoint given")
    return targets


def split(target: str) -> tuple[str, str]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), port


def join(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


async def resolve_dns(host: str, port: int) -> list[str]:
    """Every address of `host`, IPv4 ones when there are any (a dual-stack name would otherwise
    give each server twice)."""
    if is_address(host):
        return [join(host, port)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({join(info[4][0], port) for info in infos if info[0] == socket.AF_INET})
    v6 = sorted({join(info[4][0], port) for info in infos if info[0] == socket.AF_INET6})
    return v4 or v6
