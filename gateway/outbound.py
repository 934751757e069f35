"""HTTP sessions for the gateway's outbound calls, reading the environment once.

requests looks up proxy and CA-bundle variables in ``os.environ`` on every
request when ``trust_env`` is on: a fifth of the CPU of a small GoToState.
These sessions read them once and keep honouring them (``HTTPS_PROXY``,
``NO_PROXY``, ``REQUESTS_CA_BUNDLE``).
"""

import functools
import os

import requests
from requests.utils import get_environ_proxies


def session(verify=True, ca_bundle=None, client_cert=None):
    """A session that verifies TLS unless told not to: against ``ca_bundle`` when given,
    else ``$REQUESTS_CA_BUNDLE`` when set, else the system's CAs. ``client_cert``: what
    requests takes as ``cert``, for servers that require mutual TLS."""
    http = requests.Session()
    http.trust_env = False
    bundle = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    http.verify = (bundle or True) if verify else False
    http.cert = client_cert
    return http


@functools.lru_cache(maxsize=256)
def proxies(origin):
    """The proxies the environment names for ``origin`` (``scheme://host:port``), NO_PROXY applied."""
    return get_environ_proxies(origin)
