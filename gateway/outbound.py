"""HTTP clients for the gateway's outbound calls, reading the environment once.

Not requests' sessions: requests looks up proxy and CA-bundle variables in
``os.environ`` on every request, and wraps urllib3 in layers that cost as
much again. These clients read the environment once and keep honouring it
(``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``).
"""

import functools
import http.client
import os
import re
import ssl
import threading
from collections import namedtuple
from urllib.parse import urlsplit

import certifi
from requests.utils import get_environ_proxies
from urllib3.util.wait import wait_for_read

from gateway import http1
from gateway.exceptions import ConnectFailed, ExchangeFailed, ProxyUnusable

Answer = namedtuple("Answer", "status data")
# What OpenSSL said, in the text of an ssl.SSLError: "[SSL: CODE] what (_ssl.c:1006)".
_OPENSSL_REASON = re.compile(r"\[SSL: \w+\] ([^(']+)")


class KeptAlive:
    """Calls to the server at ``base_url`` over one kept-alive connection per
    thread, through the proxy the environment names for it: ``http.client``
    connects (the proxy's tunnel, TLS), :mod:`gateway.http1` exchanges.

    For ThingSpace, called once or more by every legacy request, and the
    legacy listeners, one POST per callback: urllib3's
    pool costs about twice as much CPU per call as the exchange itself. It
    follows no redirect and sends nothing twice: a connection the server
    closed while it sat idle is noticed before the request goes out (as
    urllib3 does) and replaced; a failure after that is
    :class:`ExchangeFailed`, one before anything left :class:`ConnectFailed`,
    and the caller decides what may be sent again. The ``timeout_s`` applies
    to connecting and to each read. TLS is verified against
    ``$REQUESTS_CA_BUNDLE``, else certifi's CAs, unless ``verify`` is false.
    An ``https://`` server is reached through an ``http://`` proxy with
    CONNECT, an ``http://`` one by forwarding, as urllib3's ProxyManager does.
    ``ca_bundle`` replaces the CAs verified against; ``client_cert`` (and its
    ``client_key``, if separate) for servers that require mutual TLS.
    """

    def __init__(self, base_url, timeout_s, verify=True, ca_bundle=None, client_cert=None, client_key=None):
        url = urlsplit(base_url)
        self._timeout = timeout_s
        self._prefix = url.path.rstrip("/")
        self._tls = _tls_context(verify, ca_bundle, client_cert, client_key) if url.scheme == "https" else None
        self._host, self._port = url.hostname, url.port
        self._host_header = http1.host_header(url.hostname, url.port, 443 if url.scheme == "https" else 80)
        self._tunnel = None
        proxy = proxies(base_url).get(url.scheme)
        if proxy is not None:
            proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if proxy_url.scheme != "http":
                raise ProxyUnusable(f"its proxy must be an http:// one, not {proxy_url.scheme}://")
            if self._tls is None:  # forwarded: the proxy gets the whole URL
                self._prefix = f"{url.scheme}://{url.netloc}{self._prefix}"
            else:
                self._tunnel = (url.hostname, url.port)
            self._host, self._port = proxy_url.hostname, proxy_url.port
        self._local = threading.local()

    def request(self, method, path, body, headers):
        """Send one request; its :data:`Answer`, read whole."""
        request = http1.request_head(method, self._prefix + path, self._host_header, headers, None if body is None else len(body))
        if body:
            request += body
        connection = self._connection()
        try:
            status, data, reusable = http1.exchange(connection.sock, method, request)
        except (OSError, http1.BadAnswer) as error:
            connection.close()
            raise ExchangeFailed(isinstance(error, TimeoutError)) from None
        if not reusable:
            connection.close()
        return Answer(status, data)

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None and not wait_for_read(connection.sock, timeout=0):
            return connection  # kept alive, and the server has not closed it
        if connection is None:
            connection = self._local.connection = self._new_connection()
        else:
            connection.close()
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise _connect_failed(error, self._timeout, self._tunnel is not None) from None
        return connection

    def _new_connection(self):
        if self._tls is None:
            return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
        if self._tunnel is not None:
            connection.set_tunnel(*self._tunnel)
        return connection


def _connect_failed(error, timeout, tunnelled):
    if isinstance(error, ssl.SSLError):  # trying again meets the same certificate
        reason = getattr(error, "verify_message", None) or error.reason or error
        openssl_said = _OPENSSL_REASON.search(str(error))
        problem = openssl_said.group(1).strip() if openssl_said else str(error)[:200]
        return ConnectFailed(f"(TLS: {reason})", worth_retrying=False, tls_problem=problem)
    if isinstance(error, TimeoutError):
        return ConnectFailed(f"within {timeout:g} s", worth_retrying=True, timed_out=True)
    if isinstance(error, ConnectionRefusedError):
        return ConnectFailed("(connection refused)", worth_retrying=True)
    if tunnelled and (isinstance(error, http.client.HTTPException) or error.errno is None):
        # http.client's "Tunnel connection failed: 407 ...": the proxy's answer to CONNECT
        return ConnectFailed(f"(through the proxy: {error})", worth_retrying=False)
    return ConnectFailed(f"({getattr(error, 'strerror', None) or type(error).__name__})", worth_retrying=True)


def _tls_context(verify, ca_bundle, client_cert, client_key):
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=ca_bundle or _ca_bundle() or certifi.where())
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


def _ca_bundle():
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


@functools.lru_cache(maxsize=256)
def proxies(origin):
    """The proxies the environment names for ``origin`` (``scheme://host:port``), NO_PROXY applied."""
    return get_environ_proxies(origin)
