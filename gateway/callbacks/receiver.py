"""The URL ThingSpace posts its JSON callbacks to.

A callback is acknowledged (2xx) only once it is committed to the store: from
then on the delivery worker owns it, and ThingSpace may forget it. Anything
that is not a well-formed callback from ThingSpace is refused and kept nowhere.
"""

import hmac
import json
import logging
import time
from urllib.parse import unquote

from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from gateway.callbacks.registration import BRIDGED_SERVICES
from gateway.client_address import within
from gateway.exceptions import RequestInvalid, StoreUnavailable
from gateway.logs import RateLimited
from gateway.metrics import CALLBACKS_RECEIVED
from gateway.store.records import ReceivedCallback
from gateway.translate import callback

log = logging.getLogger(__name__)
# Anyone can post to the receiver's URL as fast as they like; the log must not follow.
_refusals = RateLimited(log)

# A goToState callback is a few kilobytes; nothing legitimate comes near this.
MAX_CALLBACK_BYTES = 1 << 20
# While the store is down: when ThingSpace should send the callback again.
RETRY_AFTER_S = 5
# How long a callback waits to be committed (with those other threads
# received meanwhile) before ThingSpace is told 503 and sends it again.
COMMIT_WAIT_S = 5


class CallbackReceiver:
    """WSGI application for ``POST {path}/{account}/{service}``."""

    def __init__(self, store, credentials, allowed_sources=(), delivery=None):
        """``allowed_sources``: the networks callbacks may come from; empty, any.
        ``delivery``: this process's DeliveryWorker, to hand what is stored to.
        """
        # Concurrent callbacks committed together, and with the delivery outcomes
        # recorded meanwhile: one wait for the disk for all of them.
        self._write_receipt = store.outbox_writer(COMMIT_WAIT_S, "the callback")
        self._credentials = credentials
        self._allowed_sources = allowed_sources
        self._delivery = delivery

    def __call__(self, environ, start_response):
        # The environ read directly, not through werkzeug's Request and Response: a third of this call's CPU.
        headers = []
        try:
            outcome, status, message = self._receive(environ)
        except HTTPException as error:  # the body is over MAX_CALLBACK_BYTES
            outcome, status, message = "refused", error.code, error.description
        except StoreUnavailable as error:
            # Not committed, so not acknowledged: ThingSpace keeps it and sends it again.
            _refusals.warning("callback not accepted, the store is unavailable: %s", error)
            outcome, status, message = "unavailable", 503, "the gateway cannot store callbacks now; send it again"
            headers.append(("Retry-After", str(RETRY_AFTER_S)))
        CALLBACKS_RECEIVED.labels(outcome).inc()
        body = json.dumps({"message": message}).encode()
        headers[:0] = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTP_STATUS_CODES[status].upper()}", headers)
        return [body]

    def _receive(self, environ):
        """(outcome, HTTP status, message) for the callback ``environ`` carries."""
        remote_addr = environ.get("REMOTE_ADDR")
        if self._allowed_sources and not within(remote_addr, self._allowed_sources):
            # Before a byte of the body is read: nothing of it is kept, not even its credentials checked.
            _refusals.warning("callback refused: from %s, outside [callbacks] allowed_sources", remote_addr)
            return "refused", 403, "callbacks are accepted only from [callbacks] allowed_sources"
        # PATH_INFO is the path's UTF-8 bytes as Latin-1 text (PEP 3333), still %-quoted.
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        route = [unquote(part) for part in path.strip("/").split("/")]
        if len(route) != 2 or not route[0] or route[1] not in BRIDGED_SERVICES:
            return "refused", 404, f"post callbacks to .../{{account}}/{{{'|'.join(BRIDGED_SERVICES)}}}"
        if environ.get("REQUEST_METHOD") != "POST":
            return "refused", 405, "callbacks are POSTed"
        account, service = route
        try:
            body = json.loads(get_input_stream(environ, max_content_length=MAX_CALLBACK_BYTES).read())
        except (ValueError, RecursionError):
            return "refused", 400, "the body is not JSON"
        if not self._authentic(body):
            _refusals.warning("callback refused: wrong credentials (account %s)", account)
            return "refused", 401, "wrong callback credentials"
        try:
            callback.check(body)
        except RequestInvalid as error:
            return "refused", 400, str(error)
        event = {key: value for key, value in body.items() if key not in ("username", "password")}
        now = time.time()
        claimed_by, claimed_until = self._delivery.hand_off_claim(now) if self._delivery else (None, None)
        stored = self._write_receipt(
            ReceivedCallback(
                callback.dedupe_key(body), account, service, body["requestId"], json.dumps(event), now, claimed_by, claimed_until
            )
        )
        if stored:
            if self._delivery:
                self._delivery.stored(stored)
            return "stored", 200, "stored"
        log.info("callback requestId=%s already stored: acknowledged again", body["requestId"])
        return "duplicate", 200, "already stored"

    def _authentic(self, body):
        if not isinstance(body, dict):
            return False
        username, password = self._credentials()
        # Both compared every time, in constant time: no timing hint of which was wrong.
        same_username = hmac.compare_digest(_bytes(body.get("username")), username.encode())
        same_password = hmac.compare_digest(_bytes(body.get("password")), password.encode())
        return same_username & same_password


def _bytes(value):
    return value.encode() if isinstance(value, str) else b""
