"""HTTP clients for the gateway's outbound calls, reading the environment once.

urllib3's pools, not requests' sessions: requests looks up proxy and CA-bundle
variables in ``os.environ`` on every request, and wraps urllib3 in layers
that cost as much again. These pools read the environment once and keep
honouring it (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``).
"""

import functools
import os

import certifi
import urllib3
from requests.utils import get_environ_proxies


def pool(origin, verify=True, ca_bundle=None, client_cert=None, client_key=None):
    """A thread-safe urllib3 pool for the server at ``origin``, through the proxy the environment names for it.

    For the servers the gateway calls all the time (ThingSpace, the legacy
    listeners): urllib3 itself, under requests, costs half the CPU of a call
    through a requests session. It follows no redirect and retries nothing:
    the caller decides what may be sent again. TLS is verified as requests
    verifies it (``ca_bundle`` when given, else ``$REQUESTS_CA_BUNDLE``, else
    certifi's CAs) unless told not to; ``client_cert`` (and its
    ``client_key``, if separate) for servers that require mutual TLS.
    """
    if verify:
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_bundle or _ca_bundle() or certifi.where()}
    else:
        tls = {"cert_reqs": "CERT_NONE"}
    options = {"retries": False, "maxsize": 16, "cert_file": client_cert, "key_file": client_key, **tls}
    proxy = proxies(origin).get(origin.partition(":")[0])
    return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)


def _ca_bundle():
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


@functools.lru_cache(maxsize=256)
def proxies(origin):
    """The proxies the environment names for ``origin`` (``scheme://host:port``), NO_PROXY applied."""
    return get_environ_proxies(origin)
