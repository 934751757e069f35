"""Who the client is: the peer, or what a trusted reverse proxy says in ``X-Forwarded-*``.

Anyone can send ``X-Forwarded-For``: believed from anyone, it would let a
client pose as any address (past ``[callbacks] allowed_sources``) and name
any URL in the WSDL's ``soap:address``. So these headers count only when
the peer is one of ``[server] trusted_proxies``; from anyone else they are
removed before the application sees them.
"""

import functools
import ipaddress

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


@functools.lru_cache(maxsize=1024)  # asked on every request; clients' addresses repeat
def within(address, networks):
    """Whether the address text ``address`` is in one of ``networks`` (an IPv4-mapped one as IPv4)."""
    try:
        parsed = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    parsed = getattr(parsed, "ipv4_mapped", None) or parsed
    return any(parsed in network for network in networks)
