"""From a `--server` value to one gRPC channel target: one daemon, or several to fail over to.

gRPC fails over between the addresses of one target by itself. Its `ipv4:`, `ipv6:` and
`unix:` schemes take a comma-separated list, and the `pick_first` policy connects to the
first address that answers, in the order given. When that connection is lost it tries the
list again, in order, on the next call. The client's own retries (same request id) carry a
call that was in flight across. So a list becomes one such target, and nothing here decides
where a call goes.

gRPC's `dns:` resolver takes one name, though, and grpc-python has no way to plug in a
resolver of our own. So a list that names hosts is resolved here, once, when the client is
made. IPv4 addresses become IPv4-mapped IPv6 ones when the families mix, so one `ipv6:`
target holds both. The channel has one authority, the first address as written, so with
TLS every daemon's certificate must be valid for that name. A name that does not resolve is
left out, because the other daemons may still answer. If none resolves, the first one is
given to gRPC as it is, so calls fail the way they do for one unresolvable address and
recover if it starts to resolve.
"""

from __future__ import annotations

import ipaddress
import socket

Address = tuple[str, int] | str  # (host, port), or a unix socket's path
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_addresses(target: str) -> list[Address]:
    """The addresses of a comma-separated list, each `HOST:PORT`, `[IPV6]:PORT` or
    `unix:PATH` (also gRPC's own `ipv4:A:P,B:P` and `ipv6:[A]:P,[B]:P` forms).

    Raises ValueError naming the first entry that is none of these, or if the list mixes
    unix sockets with TCP addresses (one gRPC target cannot hold both).
    """
    for scheme in ("ipv4:", "ipv6:"):
        target = target.removeprefix(scheme)
    addresses: list[Address] = []
    for entry in (e.strip() for e in target.split(",")):
        if entry.startswith("unix:"):
            path = entry.removeprefix("unix:").removeprefix("//")
            if not path:
                raise ValueError(f"{entry!r} names no socket path")
            addresses.append(path)
            continue
        host, colon, port = entry.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{entry!r} is not HOST:PORT, [IPV6]:PORT or unix:PATH")
        addresses.append((host, int(port)))
    if len({isinstance(a, str) for a in addresses}) > 1:
        raise ValueError("a list of addresses is either all unix:PATH or all HOST:PORT")
    return addresses


def channel_target(target: str) -> tuple[str, str | None]:
    """The gRPC target for `target`, and the authority the channel should use (None:
    gRPC's own). Without a comma, `target` is gRPC's to read, exactly as given."""
    if "," not in target:
        return target, None
    addresses = split_addresses(target)
    paths = [a for a in addresses if isinstance(a, str)]
    if paths:
        return "unix:" + ",".join(paths), None
    pairs = [a for a in addresses if not isinstance(a, str)]
    authority = _host_port(*pairs[0])
    resolved = [ip_port for host, port in pairs for ip_port in _resolve(host, port)]
    if not resolved:
        return authority, None
    if all(ip.version == 4 for ip, _ in resolved):
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in resolved), authority
    mapped = (
        f"[::ffff:{ip}]:{port}" if ip.version == 4 else f"[{ip}]:{port}" for ip, port in resolved
    )
    return "ipv6:" + ",".join(mapped), authority


def _resolve(host: str, port: int) -> list[tuple[IP, int]]:
    """`host`'s addresses in the resolver's order of preference; none if it has none."""
    try:
        return [(ipaddress.ip_address(host), port)]
    except ValueError:
        pass  # a name, not an address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys((ipaddress.ip_address(str(info[4][0])), port) for info in infos))


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
