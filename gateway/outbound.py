"""HTTP clients for the gateway's outbound calls, reading the environment once.

Not requests' sessions: requests looks up proxy and CA-bundle variables in
``os.environ`` on every request, and wraps urllib3 in layers that cost as
much again. These clients read the environment once and keep honouring it
(``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``).
"""

import asyncio
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


class Route:
    """Where the calls to the server at ``base_url`` go and how: the proxy the environment
    names for it, the TLS context, each request's target and head. Shared by
    :class:`KeptAlive` and :class:`KeptAliveOnLoop`, which differ only in their I/O.

    TLS is verified against ``$REQUESTS_CA_BUNDLE``, else certifi's CAs,
    unless ``verify`` is false; ``ca_bundle`` replaces the CAs verified
    against; ``client_cert`` (and its ``client_key``, if separate) for servers
    that require mutual TLS. An ``https://`` server is reached through an
    ``http://`` proxy with CONNECT (``tunnel``), an ``http://`` one by
    forwarding, as urllib3's ProxyManager does.
    """

    def __init__(self, base_url, timeout_s, verify=True, ca_bundle=None, client_cert=None, client_key=None):
        url = urlsplit(base_url)
        self.timeout_s = timeout_s
        self._prefix = url.path.rstrip("/")
        self.tls = _tls_context(verify, ca_bundle, client_cert, client_key) if url.scheme == "https" else None
        self.host, self.port = url.hostname, url.port
        self.server_hostname = url.hostname
        self._host_header = http1.host_header(url.hostname, url.port, 443 if url.scheme == "https" else 80)
        self.tunnel = None
        proxy = proxies(base_url).get(url.scheme)
        if proxy is not None:
            proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if proxy_url.scheme != "http":
                raise ProxyUnusable(f"its proxy must be an http:// one, not {proxy_url.scheme}://")
            if self.tls is None:  # forwarded: the proxy gets the whole URL
                self._prefix = f"{url.scheme}://{url.netloc}{self._prefix}"
            else:
                self.tunnel = (url.hostname, url.port)
            self.host, self.port = proxy_url.hostname, proxy_url.port

    def request(self, method, path, body, headers):
        """The request's bytes, head and body: ``ValueError`` for one that would break the message."""
        request = http1.request_head(method, self._prefix + path, self._host_header, headers, None if body is None else len(body))
        return request + body if body else request

    def connect_failed(self, error):
        """The :class:`ConnectFailed` that ``error``, raised while connecting, means."""
        return _connect_failed(error, self.timeout_s, self.tunnel is not None)


class KeptAlive:
    """Calls to the server at ``base_url`` over one kept-alive connection per
    thread, along its :class:`Route`: ``http.client`` connects (the proxy's
    tunnel, TLS), :mod:`gateway.http1` exchanges.

    For ThingSpace, called once or more by every legacy request: urllib3's
    pool costs about twice as much CPU per call as the exchange itself. It
    follows no redirect and sends nothing twice: a connection the server
    closed while it sat idle is noticed before the request goes out (as
    urllib3 does) and replaced; a failure after that is
    :class:`ExchangeFailed`, one before anything left :class:`ConnectFailed`,
    and the caller decides what may be sent again. The ``timeout_s`` applies
    to connecting and to each read.
    """

    def __init__(self, base_url, timeout_s, verify=True, ca_bundle=None, client_cert=None, client_key=None):
        self._route = Route(base_url, timeout_s, verify, ca_bundle, client_cert, client_key)
        self._local = threading.local()

    def request(self, method, path, body, headers):
        """Send one request; its :data:`Answer`, read whole."""
        request = self._route.request(method, path, body, headers)
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
            raise self._route.connect_failed(error) from None
        return connection

    def _new_connection(self):
        route = self._route
        if route.tls is None:
            return http.client.HTTPConnection(route.host, route.port, timeout=route.timeout_s)
        connection = http.client.HTTPSConnection(route.host, route.port, timeout=route.timeout_s, context=route.tls)
        if route.tunnel is not None:
            connection.set_tunnel(*route.tunnel)
        return connection


class KeptAliveOnLoop:
    """:class:`KeptAlive` for an asyncio event loop: calls from concurrent tasks, each over a
    kept-alive connection of its own, taken from those idle (or a new one) and put back after
    its answer; as many connections as calls were ever under way at once.

    The same promises: no redirect followed, nothing sent twice (an idle
    connection the server closed is noticed before reuse and replaced),
    :class:`ConnectFailed` before anything left, :class:`ExchangeFailed` after,
    ``timeout_s`` on connecting, on sending and on each read. Used on its
    loop's thread only.
    """

    def __init__(self, base_url, timeout_s, verify=True, ca_bundle=None, client_cert=None, client_key=None):
        self._route = Route(base_url, timeout_s, verify, ca_bundle, client_cert, client_key)
        self._idle = []  # (reader, writer), the most recently used last

    async def request(self, method, path, body, headers):
        """Send one request; its :data:`Answer`, read whole."""
        request = self._route.request(method, path, body, headers)
        reader, writer = await self._connection()
        try:
            status, data, reusable = await http1.exchange_async(reader, writer, method, request, self._route.timeout_s)
        except (OSError, http1.BadAnswer) as error:
            writer.close()
            raise ExchangeFailed(isinstance(error, TimeoutError)) from None
        except BaseException:  # cancelled mid-exchange: the connection is in an unknown state
            writer.close()
            raise
        if reusable:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return Answer(status, data)

    def close(self):
        """Close the idle connections."""
        while self._idle:
            self._idle.pop()[1].close()

    async def _connection(self):
        while self._idle:
            reader, writer = self._idle.pop()
            if _quiet(reader, writer):
                return reader, writer  # kept alive, and the server has not closed it
            writer.close()
        route = self._route
        writer = None
        try:
            async with asyncio.timeout(route.timeout_s):
                if route.tunnel is None:
                    tls = {} if route.tls is None else {"ssl": route.tls, "server_hostname": route.server_hostname}
                    return await asyncio.open_connection(route.host, route.port, **tls)
                reader, writer = await asyncio.open_connection(route.host, route.port)
                await _open_tunnel(reader, writer, route)
                await writer.start_tls(route.tls, server_hostname=route.server_hostname)
                return reader, writer
        except OSError as error:  # ssl.SSLError and TimeoutError among them
            if writer is not None:
                writer.close()
            raise route.connect_failed(error) from None


def _quiet(reader, writer):
    """Whether the server has neither closed an idle connection nor sent anything on it since
    its last answer: asyncio reads what arrives into the reader's buffer, which no public
    call shows, and the kernel may hold more yet."""
    sock = writer.get_extra_info("socket")
    return (
        not reader.at_eof()
        and reader.exception() is None
        and not reader._buffer
        and sock is not None
        and not wait_for_read(sock, timeout=0)
    )


async def _open_tunnel(reader, writer, route):
    """Ask the proxy for a tunnel to ``route.tunnel``; ``OSError`` if it refuses, as http.client raises."""
    host, port = route.tunnel
    authority = http1.host_header(host, port or 443, None)
    connect = http1.request_head("CONNECT", authority, authority, {}, None)
    try:
        status, _, _ = await http1.exchange_async(reader, writer, "CONNECT", connect, route.timeout_s)
    except http1.BadAnswer as error:
        raise OSError(f"Tunnel connection failed: {error}") from None
    if status != 200:
        raise OSError(f"Tunnel connection failed: {status}")


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
