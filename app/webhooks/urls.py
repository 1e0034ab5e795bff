"""Which URLs a webhook may have, and which addresses a delivery may reach.

A URL is http or https, at most URL_MAX characters, with a host, without user or password (a
credential in a URL ends up in logs and listings) and without a fragment. Unless private
addresses are allowed (WEBHOOK_ALLOW_PRIVATE), a host must not be, or resolve to, a private,
loopback, link-local, multicast, reserved or unspecified address: checked when the webhook is
registered and again, on the addresses actually connected to, at every delivery (a name may
resolve elsewhere later)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

URL_MAX = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """A URL, or the address it resolves to, that a webhook may not use: the message says why
    and is safe to show to the client."""


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL, and the address to connect to (resolved once, so
    the address checked is the address used)."""

    url: str
    host: str
    address: str


def check_url(url: str) -> SplitResult:
    """The parts of `url` when its form is acceptable; UrlRefused saying why if not."""
    if len(url) > URL_MAX:
        raise UrlRefused(f"a URL is at most {URL_MAX} characters; this one has {len(url)}")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise UrlRefused("a URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"the scheme must be http or https, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the URL must not carry a user or password; the signature "
                         "authenticates deliveries")  # fmt: skip
    if parts.fragment:
        raise UrlRefused("the URL must not have a fragment (#...)")
    if port == 0:
        raise UrlRefused("the port must be 1 to 65535")
    return parts


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UrlRefused(f"the host {host!r} does not resolve") from None
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UrlRefused(f"the host {host!r} does not resolve")
    return found


def check_host(url: str, *, allow_private: bool) -> None:
    """At registration: a host that is, or resolves only to, addresses the webhook may not
    reach is refused. A name that does not resolve now is accepted (it may later)."""
    parts = check_url(url)
    if allow_private:
        return
    host = parts.hostname or ""
    try:
        addresses = resolve(host, parts.port or 443)
    except UrlRefused:
        if _literal(host) is None:
            return
        raise
    refused = [a for a in addresses if not is_public(a)]
    if refused:
        raise UrlRefused(f"the host {host!r} is a private, loopback or otherwise non-public "
                         f"address ({refused[0]}), which WEBHOOK_ALLOW_PRIVATE does not "
                         "allow")  # fmt: skip


def target(url: str, *, allow_private: bool) -> Target:
    """At delivery: the address to connect to. Every address the name resolves to must be
    allowed (so a name cannot mix a public and an internal one)."""
    parts = check_url(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UrlRefused(f"the host resolves to a non-public address ({address}), "
                                 "which WEBHOOK_ALLOW_PRIVATE does not allow")  # fmt: skip
    return Target(url=url, host=host, address=str(addresses[0]))
