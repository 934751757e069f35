"""Who the client is: the peer, or what a trusted reverse proxy says in ``X-Forwarded-*``.

Anyone can send ``X-Forwarded-For``: believed from anyone, it would let a
client pose as any address (past ``[callbacks] allowed_sources``) and name
any URL in the WSDL's ``soap:address``. So these headers count only when
the peer is one of ``[server] trusted_proxies``; from anyone else they are
removed before the application sees them.
"""

import functools
import ipaddress

from werkzeug.http import parse_list_header
from werkzeug.middleware.proxy_fix import ProxyFix


class TrustedProxyFix:
    """WSGI middleware: werkzeug's ProxyFix (one proxy) for requests from ``trusted`` networks only."""

    def __init__(self, app, trusted):
        self._app = app
        self._trusted = trusted
        self._fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)

    def __call__(self, environ, start_response):
        if within(environ.get("REMOTE_ADDR"), self._trusted):
            return self._fixed(environ, start_response)
        for name in [name for name in environ if name.startswith("HTTP_X_FORWARDED_")]:
            del environ[name]
        return self._app(environ, start_response)


def client_of(peer, forwarded_for, trusted):
    """The client's address: the last of ``forwarded_for`` (an X-Forwarded-For value, or None)
    when ``peer`` is one of the ``trusted`` proxies, as TrustedProxyFix gives it; else ``peer``."""
    values = parse_list_header(forwarded_for) if forwarded_for else []
    return values[-1] if values and within(peer, trusted) else peer


@functools.lru_cache(maxsize=1024)  # asked on every request; clients' addresses repeat
def within(address, networks):
    """Whether the address text ``address`` is in one of ``networks`` (an IPv4-mapped one as IPv4)."""
    try:
        parsed = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    parsed = getattr(parsed, "ipv4_mapped", None) or parsed
    return any(parsed in network for network in networks)
