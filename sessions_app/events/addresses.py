"""No SSRF: an endpoint's URL must reach only the public internet, checked twice.

At registration (`check_endpoint_url`, from the model's `clean` and the API's serializer) the host is
resolved and every address it resolves to must be public; at delivery the check runs again where
the connection is made (`vetted_socket`, which makes every new connection of the HTTP client,
`client.py`): the host is resolved once more, every address vetted, and the socket connects to a
vetted address itself, so a name whose DNS answer changed since registration (rebinding) cannot
reach a private address either.
`EVENT_WEBHOOKS_ALLOW_PRIVATE=true` lifts the address rule (local setups, tests); the scheme rule
(http or https, https unless DEBUG) stays.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeAddress(Exception):
    """The URL's host is, or resolves to, an address outside the public internet (the message says which)."""


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What is wrong with `address` for an outbound request, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for name, refused in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if refused:
            return name
    if not address.is_global:
        return "reserved"  # shared (100.64/10), documentation and other non-global ranges
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (an IP literal is its own), each checked unless
    EVENT_WEBHOOKS_ALLOW_PRIVATE; raises UnsafeAddress naming the first refused one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeAddress(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not settings.EVENT_WEBHOOKS_ALLOW_PRIVATE:
        for address in addresses:
            kind = _kind(ipaddress.ip_address(address.split("%", 1)[0]))
            if kind is not None:
                raise UnsafeAddress(f"{host} resolves to {address}, a {kind} address")
    return addresses


def check_endpoint_url(url: str) -> None:
    """Raise ValueError naming the problem unless `url` may be an endpoint's (the registration check)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("Only http and https URLs can receive events.")
    if parts.scheme != "https" and not settings.DEBUG:
        raise ValueError("The URL must use https.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("The URL's port is not a number from 0 to 65535.") from None
    if not parts.hostname:
        raise ValueError("The URL has no host.")
    try:
        resolve(parts.hostname, port)
    except UnsafeAddress as exc:
        raise ValueError(f"Events cannot be sent there: {exc}.") from None


def vetted_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to `host` for a delivery: the host is resolved now and every address vetted
    (UnsafeAddress otherwise), then the socket connects to a vetted address itself, so a DNS answer
    that changed since registration, or changes between the check and the connect, cannot reach a
    private address. OSError when no address takes the connection."""
    last: OSError | None = None
    for address in resolve(host, port):
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError(f"{host} has no address")
