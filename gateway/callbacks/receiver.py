"""The URL ThingSpace posts its JSON callbacks to.

A callback is acknowledged (2xx) only once it is committed to the store: from
then on the delivery worker owns it, and ThingSpace may forget it. Anything
that is not a well-formed callback from ThingSpace is refused and kept nowhere.

Two ways in, one set of checks: a WSGI application, whose thread waits for
the commit, and ``on_loop`` for the gunicorn worker's event loop, which
never waits: the callback is submitted to the store's group commit and
answered by the thread that commits it (``callbacks.loop_route``).
"""

import contextvars
import dataclasses
import hmac
import json
import logging
import time
from urllib.parse import unquote

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
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
    """``POST {path}/{account}/{service}``: a WSGI application, and ``on_loop`` for event loops."""

    def __init__(self, store, credentials, allowed_sources=(), delivery=None):
        """``allowed_sources``: the networks callbacks may come from; empty, any.
        ``delivery``: this process's DeliveryWorker, to hand what is stored to.
        """
        # Concurrent callbacks committed together, and with the delivery outcomes
        # recorded meanwhile: one wait for the disk for all of them.
        self._write_receipt = store.outbox_writer(COMMIT_WAIT_S, "the callback")
        self._submit_receipt = store.outbox_submitter(COMMIT_WAIT_S, "the callback")
        self._expire_receipts = store.expire_outbox_submissions
        self._credentials = credentials
        self._allowed_sources = allowed_sources
        self._delivery = delivery

    def __call__(self, environ, start_response):
        # The environ read directly, not through werkzeug's Request and Response: a third of this call's CPU.
        try:
            admitted = self._admit(
                environ.get("REMOTE_ADDR"),
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO", ""),
                lambda: get_input_stream(environ, max_content_length=MAX_CALLBACK_BYTES).read(),
            )
            if isinstance(admitted, ReceivedCallback):
                admitted = self._stored(self._write_receipt(self._claimed(admitted)), admitted)
            status, headers, body = _answer(*admitted)
        except StoreUnavailable as error:
            status, headers, body = _answer(*_unavailable(error))
        start_response(status, headers)
        return [body]

    def on_loop(self, remote_addr, method, path_info, body, answer):
        """Receive a callback on an event loop, never waiting: ``answer(status, headers, body)``
        (WSGI's status line and headers, the body as bytes) is called once: here for a
        refusal, else from another thread once the callback is committed or failed to be.

        ``path_info`` as WSGI's PATH_INFO (below this application's path); ``body``: bytes.
        """
        try:
            admitted = self._admit(remote_addr, method, path_info, lambda: body)
        except StoreUnavailable as error:  # the gateway's credentials could not be read
            return answer(*_answer(*_unavailable(error)))
        if not isinstance(admitted, ReceivedCallback):
            return answer(*_answer(*admitted))

        def committed(stored, error):
            if error is None:
                return answer(*_answer(*self._stored(stored, admitted)))
            if isinstance(error, StoreUnavailable):
                return answer(*_answer(*_unavailable(error)))
            log.error("callback requestId=%s not stored", admitted.request_id, exc_info=error)
            return answer(*_answer("failed", 500, "the gateway failed to store the callback; send it again"))

        # Never waiting for a sender to take a callback handed over: the loop has other requests to read.
        # Answered in this context (its request id) from whichever thread is told.
        context = contextvars.copy_context()
        self._submit_receipt(self._claimed(admitted, 0.0), on_done=lambda *told: context.run(committed, *told))

    def expire_overdue(self):
        """Answer 503 to each callback received ``on_loop`` and not committed within COMMIT_WAIT_S."""
        self._expire_receipts()

    def _admit(self, remote_addr, method, path_info, read_body):
        """The callback to store, or (outcome, HTTP status, message) refusing it.

        ``read_body()`` is called only once the route is known; it may raise
        werkzeug's 413 for a body over MAX_CALLBACK_BYTES.
        """
        if self._allowed_sources and not within(remote_addr, self._allowed_sources):
            # Before a byte of the body is read: nothing of it is kept, not even its credentials checked.
            _refusals.warning("callback refused: from %s, outside [callbacks] allowed_sources", remote_addr)
            return "refused", 403, "callbacks are accepted only from [callbacks] allowed_sources"
        # PATH_INFO is the path's UTF-8 bytes as Latin-1 text (PEP 3333), still %-quoted.
        path = path_info.encode("latin-1").decode("utf-8", "replace")
        route = [unquote(part) for part in path.strip("/").split("/")]
        if len(route) != 2 or not route[0] or route[1] not in BRIDGED_SERVICES:
            return "refused", 404, f"post callbacks to .../{{account}}/{{{'|'.join(BRIDGED_SERVICES)}}}"
        if method != "POST":
            return "refused", 405, "callbacks are POSTed"
        account, service = route
        try:
            data = read_body()
        except HTTPException as error:  # the body is over MAX_CALLBACK_BYTES
            return "refused", error.code, error.description
        if len(data) > MAX_CALLBACK_BYTES:
            return "refused", RequestEntityTooLarge.code, RequestEntityTooLarge.description
        try:
            body = json.loads(data)
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
        return ReceivedCallback(
            callback.dedupe_key(body), account, service, body["requestId"], json.dumps(event), time.time(), None, None
        )

    def _claimed(self, received, hand_off_wait_s=None):
        """``received``, claimed by this process's delivery worker when it can take it (see ``hand_off_claim``)."""
        if self._delivery is None:
            return received
        claimed_by, claimed_until = self._delivery.hand_off_claim(received.received_at, hand_off_wait_s)
        return dataclasses.replace(received, claimed_by=claimed_by, claimed_until=claimed_until)

    def _stored(self, stored, received):
        """(outcome, HTTP status, message) for ``received``, committed with the result ``stored``."""
        if stored:
            if self._delivery:
                self._delivery.stored(stored)
            return "stored", 200, "stored"
        log.info("callback requestId=%s already stored: acknowledged again", received.request_id)
        return "duplicate", 200, "already stored"

    def _authentic(self, body):
        if not isinstance(body, dict):
            return False
        username, password = self._credentials()
        # Both compared every time, in constant time: no timing hint of which was wrong.
        same_username = hmac.compare_digest(_bytes(body.get("username")), username.encode())
        same_password = hmac.compare_digest(_bytes(body.get("password")), password.encode())
        return same_username & same_password


def _unavailable(error):
    # Not committed, so not acknowledged: ThingSpace keeps it and sends it again.
    _refusals.warning("callback not accepted, the store is unavailable: %s", error)
    return "unavailable", 503, "the gateway cannot store callbacks now; send it again"


def _answer(outcome, status, message):
    """(status line, headers, body) of the answer, counted in the metrics."""
    CALLBACKS_RECEIVED.labels(outcome).inc()
    body = json.dumps({"message": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if status == 503:
        headers.append(("Retry-After", str(RETRY_AFTER_S)))
    return f"{status} {HTTP_STATUS_CODES[status].upper()}", headers, body


def _bytes(value):
    return value.encode() if isinstance(value, str) else b""
