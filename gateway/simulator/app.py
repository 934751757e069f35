"""The ThingSpace REST side, as a werkzeug WSGI application.

It speaks the OAuth, session, callback-registration and goToState endpoints
the gateway uses, answering as ThingSpace does (see the REST document and
CONTRACT.md), plus a small control API under ``/_simulator/`` for tests and
demos, which can also make the next requests to a path fail (faults.py).
"""

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from gateway.simulator.callbacks import CallbackSender, Delivery
from gateway.simulator.devices import device_outcome, requested_devices
from gateway.simulator.errors import (
    ACCESS_TOKEN_EXPIRED,
    ACCOUNT_NOT_FOUND,
    CALLBACK_NOT_FOUND,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    ApiError,
    error_response,
    invalid_request,
    json_response,
)
from gateway.simulator.faults import FaultQueue, fault_order
from gateway.simulator.state import CallbackRegistration, DeviceFailure, SimulatorState
from gateway.simulator.validation import string_field, validate_go_to_state

log = logging.getLogger("gateway.simulator")

M2M_PREFIX = "/api/m2m/"
OAUTH_SCOPE = "ts.m2m"
# The registration name goToState results are sent to.
STATE_SERVICE = "StateService"
# The headers the control API shows of a request; the rest is noise for a test.
RECORDED_HEADERS = ("Authorization", "VZ-M2M-Token", "Content-Type")

_URLS = Map(
    [
        Rule("/api/ts/v1/oauth2/token", methods=["POST"], endpoint="issue_access_token"),
        Rule("/api/m2m/v1/session/login", methods=["POST"], endpoint="log_in"),
        Rule("/api/m2m/v1/session/logout", methods=["POST"], endpoint="log_out"),
        Rule("/api/m2m/v1/devices/actions/goToState", methods=["PUT"], endpoint="go_to_state"),
        Rule("/api/m2m/v1/callbacks/<account_name>", methods=["GET"], endpoint="list_callbacks"),
        Rule("/api/m2m/v1/callbacks/<account_name>", methods=["POST"], endpoint="register_callback"),
        Rule(
            "/api/m2m/v1/callbacks/<account_name>/name/<name>", methods=["DELETE"], endpoint="unregister_callback"
        ),
        Rule("/_simulator/requests", methods=["GET"], endpoint="recorded_requests"),
        Rule("/_simulator/reset", methods=["POST"], endpoint="reset"),
        Rule("/_simulator/failing-devices", methods=["POST"], endpoint="mark_device_failing"),
        Rule("/_simulator/faults", methods=["POST"], endpoint="inject_fault"),
        Rule("/_simulator/faults", methods=["DELETE"], endpoint="clear_faults"),
    ]
)


@dataclass
class SimulatorSettings:
    """What the simulated ThingSpace accepts and how it sends callbacks; times in seconds."""

    host: str = "127.0.0.1"
    port: int = 8081
    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    users: dict = field(default_factory=lambda: {"demo": "demo-password"})
    account_name: str = "0000123456-00001"
    token_lifetime_s: float = 3600
    session_idle_s: float = 1200
    callback_retry_s: float = 5.0  # between attempts at one callback
    callback_max: int = 4  # attempts per callback in all: the callbacks' maxCallbackThreshold
    callback_delay_s: float = 0.2  # from accepting a goToState to its first callbacks


class _Request(Request):
    # A 10,000-device goToState with room to spare.
    max_content_length = 16 * 1024 * 1024
    # The injected fault (faults.Fault) this request suffers, if any.
    fault = None


def _parsed_json(message):
    """The body of a request or response as JSON, or None when it has none or is not JSON."""
    try:
        return json.loads(message.get_data())
    except ValueError:
        return None


def _json_object(request):
    body = _parsed_json(request)
    if not isinstance(body, dict):
        raise invalid_request("body", "must be a JSON object")
    return body


def _recorded(request):
    return {
        "method": request.method,
        "path": request.path,
        "headers": {name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers},
        "json": _parsed_json(request),
    }


def _status_and_document(answer):
    """What the record shows of an answer: (None, None) for a connection closed without one."""
    if isinstance(answer, Response):
        return answer.status_code, _parsed_json(answer)
    return None, None


def _oauth_error(status, error, description):
    return json_response({"error": error, "error_description": description}, status)


def _require_own_account(session, account_name):
    # A user reaches only the account it logged in to.
    if account_name != session.account_name:
        raise ApiError(400, ACCOUNT_NOT_FOUND, f"Account {account_name} not found")


def _error_document_for(request, error):
    """The error document answering ``error``; never a stack trace."""
    if isinstance(error, ApiError):
        return error_response(error.status, error.code, error.message)
    if isinstance(error, NotFound):
        return error_response(404, NOT_FOUND, f"No resource at {request.path}")
    if isinstance(error, MethodNotAllowed):
        response = error_response(405, METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}")
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
        return response
    if isinstance(error, HTTPException):  # e.g. a body over max_content_length
        return error_response(error.code, INVALID_REQUEST, error.description)
    log.error("%s %s failed", request.method, request.path, exc_info=error)
    return error_response(500, INTERNAL_ERROR, "Internal error")


class Simulator:
    """The WSGI application; ``close()`` stops its callback threads."""

    def __init__(self, settings=None):
        self.settings = settings or SimulatorSettings()
        self._state = SimulatorState(self.settings)
        self._callbacks = CallbackSender(self.settings.callback_retry_s, self.settings.callback_max)
        self._faults = FaultQueue()

    def __call__(self, environ, start_response):
        return self._respond(_Request(environ))(environ, start_response)

    def close(self):
        self._callbacks.close()

    def _respond(self, request):
        """The WSGI application answering ``request``: a Response, unless an injected fault hangs up."""
        fault = request.fault = self._faults.take(request.path)
        entry = response = None
        try:
            if request.path.startswith(M2M_PREFIX):
                entry = _recorded(request)
                if fault is not None:
                    entry["fault"] = fault.kind
                self._state.record_request(entry)
            if fault is None or fault.performs:
                response = self._dispatch(request)
            else:
                request.get_data()  # the whole request arrives, as any that reached ThingSpace
        except Exception as error:  # whatever went wrong, the caller gets an error document
            response = _error_document_for(request, error)
        if fault is not None:
            log.info("fault %s on %s %s", fault.kind, request.method, request.path)
            response = fault.answer(request, response)
        if entry is not None:
            self._state.record_answer(entry, *_status_and_document(response))
        if fault is not None:
            fault.wait()
        return response

    def _dispatch(self, request):
        endpoint, arguments = _URLS.bind_to_environ(request.environ).match()
        if request.path.startswith(M2M_PREFIX):
            self._require_access_token(request)
            if endpoint != "log_in":
                arguments["session"] = self._state.use_session(request.headers.get("VZ-M2M-Token", ""))
        return getattr(self, f"_on_{endpoint}")(request, **arguments)

    def _require_access_token(self, request):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._state.access_token_valid(token.strip()):
            raise ApiError(401, ACCESS_TOKEN_EXPIRED, "Access token expired or invalid")

    # -- OAuth -----------------------------------------------------------------

    def _on_issue_access_token(self, request):
        client = request.authorization
        if client is None or client.type != "basic":
            return _oauth_error(401, "invalid_client", "Client authentication (HTTP Basic) is required")
        if not self._state.client_authorized(client.username, client.password):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        if request.form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        return json_response(
            {
                "access_token": self._state.issue_access_token(),
                "token_type": "bearer",
                "expires_in": math.ceil(self.settings.token_lifetime_s),
                "scope": OAUTH_SCOPE,
            }
        )

    # -- Session ---------------------------------------------------------------

    def _on_log_in(self, request):
        body = _json_object(request)
        return json_response(
            {"sessionToken": self._state.log_in(string_field(body, "username"), string_field(body, "password"))}
        )

    def _on_log_out(self, request, session):
        self._state.log_out(session.token)
        return json_response({"sessionToken": session.token})

    # -- Callback registrations ------------------------------------------------

    def _on_list_callbacks(self, request, session, account_name):
        _require_own_account(session, account_name)
        return json_response(
            [
                {"accountName": r.account_name, "name": r.name, "url": r.url}
                for r in self._state.callback_registrations(account_name)
            ]
        )

    def _on_register_callback(self, request, session, account_name):
        _require_own_account(session, account_name)
        body = _json_object(request)
        registration = CallbackRegistration(
            account_name=account_name,
            name=string_field(body, "name"),
            url=string_field(body, "url"),
            username=string_field(body, "username", required=False) or "",
            password=string_field(body, "password", required=False) or "",
        )
        if urlsplit(registration.url).scheme not in ("http", "https"):
            raise invalid_request("url", "must be an http or https URL")
        self._state.register_callback(registration)
        return json_response({"accountName": account_name, "name": registration.name})

    def _on_unregister_callback(self, request, session, account_name, name):
        _require_own_account(session, account_name)
        if not self._state.unregister_callback(account_name, name):
            raise ApiError(400, CALLBACK_NOT_FOUND, f"No callback named {name} for account {account_name}")
        return json_response({"accountName": account_name, "name": name})

    # -- goToState -------------------------------------------------------------

    def _on_go_to_state(self, request, session):
        if request.mimetype != "application/json":
            raise invalid_request("Content-Type", "must be application/json")
        order = _json_object(request)
        validate_go_to_state(order)
        if "accountName" in order.get("filter", {}):
            _require_own_account(session, order["filter"]["accountName"])
        request_id = str(uuid.uuid4())
        devices = requested_devices(order, session.account_name)
        log.info("goToState requestId=%s devices=%d account=%s", request_id, len(devices), session.account_name)
        if request.fault is None:
            self._send_callbacks(request_id, order, devices, session.account_name)
        else:
            log.info("goToState requestId=%s: no callbacks (fault %s)", request_id, request.fault.kind)
        return json_response({"requestId": request_id})

    def _send_callbacks(self, request_id, order, devices, account_name):
        registration = self._state.callback_registration(account_name, STATE_SERVICE)
        if registration is None:
            log.warning(
                "no %s callback registered for account %s: dropping the callbacks of requestId=%s",
                STATE_SERVICE, account_name, request_id,
            )
            return
        failure_of = self._state.failure_of
        deliveries = [
            Delivery(registration, request_id, device_outcome(device, order, account_name, failure_of(device.ids)))
            for device in devices
        ]
        self._callbacks.send_later(deliveries, self.settings.callback_delay_s)

    # -- Control API -----------------------------------------------------------

    def _on_recorded_requests(self, request):
        return json_response(self._state.recorded_requests())

    def _on_reset(self, request):
        self._state.reset()
        self._faults.clear()
        return json_response({"reset": True})

    def _on_mark_device_failing(self, request):
        body = _json_object(request)
        device_id = string_field(body, "id")
        failure = DeviceFailure(string_field(body, "reasonCode"), string_field(body, "reasonDesc"))
        self._state.mark_failing(device_id, failure)
        return json_response({"id": device_id, "reasonCode": failure.reason_code, "reasonDesc": failure.reason_desc})

    def _on_inject_fault(self, request):
        path, fault, times = fault_order(_json_object(request))
        self._faults.add(path, fault, times)
        log.info("fault %s queued for the next %d request(s) to %s", fault.kind, times, path)
        return json_response({"path": path, "times": times, **fault.document()})

    def _on_clear_faults(self, request):
        return json_response({"cleared": self._faults.clear()})
