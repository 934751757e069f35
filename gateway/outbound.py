"""HTTP clients for the gateway's outbound calls, reading the environment once.

requests looks up proxy and CA-bundle variables in ``os.environ`` on every
request when ``trust_env`` is on: a fifth of the CPU of a small GoToState.
These clients read them once and keep honouring them (``HTTPS_PROXY``,
``NO_PROXY``, ``REQUESTS_CA_BUNDLE``).
"""

import functools
import os

import certifi
import requests
import urllib3
from requests.utils import get_environ_proxies


def session(verify=True, ca_bundle=None, client_cert=None):
    """A session that verifies TLS unless told not to: against ``ca_bundle`` when given,
    else ``$REQUESTS_CA_BUNDLE`` when set, else certifi's (requests' own default). ``client_cert``: what
    requests takes as ``cert``, for servers that require mutual TLS."""
    http = requests.Session()
    http.trust_env = False
    http.verify = (ca_bundle or _ca_bundle() or True) if verify else False
    http.cert = client_cert
    return http


def pool(origin, verify=True):
    """A thread-safe urllib3 pool for the server at ``origin``, through the proxy the environment names for it.

    For the one server the gateway calls on every request (ThingSpace):
    urllib3 itself, under requests, costs half the CPU of a call through a
    requests session. It follows no redirect and retries nothing: the
    caller decides what may be sent again. TLS is verified as requests
    verifies it (``$REQUESTS_CA_BUNDLE``, else certifi's CAs) unless told not to.
    """
    tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": _ca_bundle() or certifi.where()} if verify else {"cert_reqs": "CERT_NONE"}
    options = {"retries": False, "maxsize": 16, **tls}
    proxy = proxies(origin).get(origin.partition(":")[0])
    return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)


def _ca_bundle():
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


@functools.lru_cache(maxsize=256)
def proxies(origin):
    """The proxies the environment names for ``origin`` (``scheme://host:port``), NO_PROXY applied."""
    return get_environ_proxies(origin)
