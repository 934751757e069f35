"""Where the gateway will post callbacks: the listener URL policy.

Any client with a ThingSpace session can register a listener URL, and the
gateway then POSTs to it from inside the operator's network. So a URL is
checked when it is registered and again before every delivery, after its
host name is resolved, since a name can later resolve somewhere else:

- never the gateway itself (its listening address and port, its public
  URLs): callbacks posted into our own endpoints;
- never a link-local address (169.254.0.0/16, fe80::/10), where cloud
  metadata services answer, unless the operator lists such a network;
- with ``[callbacks] allowed_listeners`` set, only the networks and host
  names listed there. Loopback stays allowed by default: ``make run``'s
  listener is on 127.0.0.1.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from gateway.exceptions import ListenerRefused

LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
DEFAULT_PORTS = {"http": 80, "https": 443}


class ListenerPolicy:
    def __init__(self, allowed=(), own_host="127.0.0.1", own_port=8080, own_urls=()):
        """``allowed``: networks (``ipaddress`` networks) and host names; empty allows any but the refused."""
        self._networks = [entry for entry in allowed if not isinstance(entry, str)]
        self._names = {entry.lower() for entry in allowed if isinstance(entry, str)}
        self._restricted = bool(allowed)
        self._own_port = own_port
        self._own_any = ipaddress.ip_address(own_host).is_unspecified if _is_ip(own_host) else False
        self._own_addresses = set() if self._own_any else _resolve(own_host, own_port)
        self._own_origins = {_origin(url) for url in own_urls if url}

    @classmethod
    def from_config(cls, config):
        server = config.server
        return cls(config.callbacks.allowed_listeners, server.host, server.port, (server.public_url, config.callback_url()))

    def check(self, url):
        """Raise ListenerRefused unless the gateway may post to ``url`` (an absolute http(s) URL) now."""
        host, port = _origin(url)
        if (host, port) in self._own_origins:
            raise ListenerRefused(host, "is this gateway's own public URL")
        addresses = _resolve(host, port)
        if not addresses:
            raise ListenerRefused(host, "does not resolve to any address")
        for address in addresses:
            self._check_address(host, address, port)

    def _check_address(self, host, address, port):
        if port == self._own_port and (address in self._own_addresses or (self._own_any and _is_local(address))):
            raise ListenerRefused(host, f"resolves to {address} port {port}, this gateway's own listening address")
        listed = any(address in network for network in self._networks)
        if not listed and any(address in network for network in LINK_LOCAL):
            raise ListenerRefused(host, f"resolves to {address}: link-local addresses (cloud metadata) are refused")
        if self._restricted and not listed and host not in self._names:
            raise ListenerRefused(host, f"resolves to {address}, which [callbacks] allowed_listeners does not allow")


def _origin(url):
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(parts.scheme)


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _resolve(host, port):
    """Every address ``host`` resolves to now (IPv4-mapped IPv6 ones as IPv4), empty if it does not."""
    try:
        # An address needs no resolver: checked before every delivery, the lookup cost as much as the check.
        return {_unmapped(ipaddress.ip_address(host.split("%")[0]))}
    except ValueError:
        pass
    try:
        answers = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return set()
    addresses = set()
    for *_, sockaddr in answers:
        addresses.add(_unmapped(ipaddress.ip_address(sockaddr[0].split("%")[0])))
    return addresses


def _unmapped(address):
    """An IPv4-mapped IPv6 address as the IPv4 address it maps."""
    return getattr(address, "ipv4_mapped", None) or address


def _is_local(address):
    """Whether ``address`` is one of this host's own: only those can be bound."""
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True
