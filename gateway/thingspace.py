"""The ThingSpace REST client: OAuth, session login/logout, goToState.

The gateway holds only the OAuth client key and secret. A user's session
token is never stored here: each call receives the one the legacy client sent.
"""

import base64
import json
import threading
import time
from urllib.parse import quote, urlencode

from gateway import outbound
from gateway.exceptions import (
    ConfigError,
    ConnectFailed,
    ExchangeFailed,
    ProxyUnusable,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.metrics import UPSTREAM_SECONDS
from gateway.xmlchars import xml_safe

TOKEN_PATH = "/api/ts/v1/oauth2/token"
LOGIN_PATH = "/api/m2m/v1/session/login"
LOGOUT_PATH = "/api/m2m/v1/session/logout"
GO_TO_STATE_PATH = "/api/m2m/v1/devices/actions/goToState"
CALLBACKS_PATH = "/api/m2m/v1/callbacks/{account}"
CALLBACK_PATH = "/api/m2m/v1/callbacks/{account}/name/{name}"

# Fetch a new bearer this long before the current one expires, so that a
# token never lapses between our check and ThingSpace's.
TOKEN_MARGIN_S = 60
# A connection that could not even be opened carried nothing: trying again
# cannot do anything twice. Pauses before each further try.
CONNECT_RETRY_PAUSES_S = (0.2, 1.0)
# ThingSpace's codes for a VZ-M2M session that timed out or is not known. It
# answers them with 401, as it does a refused bearer: a new bearer cannot cure
# them, only the legacy client's LogIn can.
SESSION_EXPIRED_CODES = frozenset(
    {
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Invalid",
    }
)
# ThingSpace's identifiers are UUID-like; anything far longer is not one.
MAX_IDENTIFIER = 200
MAX_ERROR_MESSAGE = 500


class ThingSpace:
    """One client per gateway process; safe to share between threads."""

    def __init__(self, upstream):
        credentials = f"{upstream.oauth_client_id}:{upstream.oauth_client_secret}".encode()
        self._client_auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._timeout = upstream.timeout_s
        try:
            self._http = outbound.KeptAlive(upstream.base_url, upstream.timeout_s, upstream.verify_tls)
        except ProxyUnusable as error:
            raise ConfigError("upstream", "base_url", str(error)) from None
        self._token_lock = threading.Lock()
        self._token = None
        self._token_renew_at = 0.0

    def login(self, username, password):
        """Return the session token for these M2M credentials.

        A refused login is never retried: five failures in a row lock the
        account.
        """
        answer = self._m2m("login", "POST", LOGIN_PATH, None, {"username": username, "password": password})
        return _field(answer, "sessionToken")

    def logout(self, session_token):
        answer = self._m2m("logout", "POST", LOGOUT_PATH, session_token, None)
        return answer.get("sessionToken", session_token) if isinstance(answer, dict) else session_token

    def go_to_state(self, session_token, body):
        """Send a goToState body; return ThingSpace's requestId."""
        answer = self._m2m("goToState", "PUT", GO_TO_STATE_PATH, session_token, body)
        return _field(answer, "requestId")

    def register_callback(self, session_token, account, name, url, username, password):
        """Have ThingSpace post ``name`` callbacks of ``account`` to ``url``."""
        body = {"name": name, "url": url, "username": username, "password": password}
        self._m2m("registerCallback", "POST", CALLBACKS_PATH.format(account=quote(account, safe="")), session_token, body)

    def unregister_callback(self, session_token, account, name):
        path = CALLBACK_PATH.format(account=quote(account, safe=""), name=quote(name, safe=""))
        self._m2m("unregisterCallback", "DELETE", path, session_token, None)

    def callbacks(self, session_token, account):
        """ThingSpace's registrations for ``account``; also proves the session may see it."""
        return self._m2m("listCallbacks", "GET", CALLBACKS_PATH.format(account=quote(account, safe="")), session_token, None)

    def _m2m(self, call, method, path, session_token, body):
        headers = {}
        if session_token is not None:
            headers["VZ-M2M-Token"] = session_token
        response = self._send(call, method, path, headers, body, self.bearer())
        if _bearer_refused(response):
            # The call itself never ran: sending it again with a fresh token
            # cannot do anything twice.
            response = self._send(call, method, path, headers, body, self.bearer(renew=True))
        return _answer(response)

    def _send(self, call, method, path, headers, body, bearer):
        headers = {**headers, "Authorization": f"Bearer {bearer}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        return self._request(call, method, path, headers, body)

    def bearer(self, renew=False):
        """A bearer token: the cached one while it is valid, else a new one."""
        with self._token_lock:
            if renew or self._token is None or time.monotonic() >= self._token_renew_at:
                self._fetch_token()
            return self._token

    def _fetch_token(self):
        response = self._request(
            "token",
            "POST",
            TOKEN_PATH,
            {"Authorization": self._client_auth, "Content-Type": "application/x-www-form-urlencoded"},
            urlencode({"grant_type": "client_credentials"}).encode(),
        )
        if response.status != 200:
            raise UpstreamUnavailable(
                f"ThingSpace refused the gateway's OAuth client credentials (HTTP {response.status}); "
                "check [upstream] oauth_client_id and oauth_client_secret"
            )
        answer = _json(response)
        token = _field(answer, "access_token")
        lifetime = answer.get("expires_in", 3600)
        if not isinstance(lifetime, (int, float)) or lifetime <= 0:
            raise UpstreamUnavailable("ThingSpace's OAuth answer has no usable expires_in")
        self._token = token
        self._token_renew_at = time.monotonic() + max(lifetime - TOKEN_MARGIN_S, lifetime / 2)

    def _request(self, call, method, path, headers, body):
        for pause in (*CONNECT_RETRY_PAUSES_S, None):
            try:
                with UPSTREAM_SECONDS.labels(call).time():
                    return self._http.request(method, path, body, headers)
            except ConnectFailed as error:
                if pause is None or not error.worth_retrying:
                    raise UpstreamUnavailable(f"ThingSpace {error}") from None
            except ExchangeFailed as error:
                if error.timed_out:
                    raise UpstreamUnavailable(f"ThingSpace did not answer within {self._timeout:g} s") from None
                raise UpstreamUnavailable("ThingSpace closed the connection without answering") from None
            time.sleep(pause)


def _bearer_refused(response):
    """Whether ThingSpace refused the bearer: a 401 that is not about the session.

    ThingSpace's codes for a refused bearer are not documented (CONTRACT.md),
    so any 401 without a SessionToken code counts, an error document or not.
    """
    if response.status != 401:
        return False
    try:
        code = json.loads(response.data).get("errorCode")
    except (ValueError, AttributeError):
        return True
    return not isinstance(code, str) or code not in SESSION_EXPIRED_CODES


def _answer(response):
    if 200 <= response.status < 300:
        return _json(response)
    try:
        error = json.loads(response.data)
        code, message = error["errorCode"], error["errorMessage"]
    except (ValueError, KeyError, TypeError):
        raise UpstreamUnavailable(f"ThingSpace answered HTTP {response.status} without its error document") from None
    if not isinstance(code, str) or not _is_identifier(code):
        raise UpstreamUnavailable(f"ThingSpace answered HTTP {response.status} with an unusable errorCode")
    raise UpstreamError(code, xml_safe(str(message))[:MAX_ERROR_MESSAGE], response.status)


def _json(response):
    try:
        answer = json.loads(response.data)
    except ValueError:  # UnicodeDecodeError included
        answer = None
    if not isinstance(answer, (dict, list)):
        raise UpstreamUnavailable(f"ThingSpace answered HTTP {response.status} with a body that is not JSON")
    return answer


def _field(answer, name):
    """An identifier from ThingSpace's answer; it goes into XML and logs, so it must be plain."""
    value = answer.get(name) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not _is_identifier(value):
        raise UpstreamUnavailable(f"ThingSpace's answer has no usable {name}")
    return value


def _is_identifier(value):
    return 0 < len(value) <= MAX_IDENTIFIER and value.isprintable() and xml_safe(value) == value
