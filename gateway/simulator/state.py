"""Everything the simulator remembers, in memory, behind one lock.

The server is threaded and callbacks leave from other threads, so every read
and write of this state takes the lock.
"""

import hmac
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from gateway.simulator.errors import (
    ACCOUNT_LOCKED,
    INVALID_CREDENTIALS,
    SESSION_EXPIRED,
    SESSION_INVALID,
    ApiError,
)

FAILED_LOGINS_BEFORE_LOCK = 5


@dataclass
class Session:
    """A logged-in user; only the state itself moves ``last_used``."""

    token: str
    username: str
    account_name: str
    last_used: float


@dataclass(frozen=True)
class CallbackRegistration:
    account_name: str
    name: str
    url: str
    username: str
    password: str


@dataclass(frozen=True)
class DeviceFailure:
    """Why a device marked failing fails every state change."""

    reason_code: str
    reason_desc: str


def _same_secret(given, expected):
    # Constant time, so a demo never teaches a timing leak.
    return hmac.compare_digest(given.encode(), expected.encode())


class SimulatorState:
    def __init__(self, settings):
        self._settings = settings
        self._lock = threading.Lock()
        self._access_tokens = {}  # token -> monotonic expiry
        self._sessions = {}  # session token -> Session
        self._failed_logins = Counter()  # username -> failures in a row
        self._registrations = {}  # (account name, name) -> CallbackRegistration
        self._failing_devices = {}  # device id -> DeviceFailure
        self._requests = []  # the recorded M2M requests, oldest first

    # -- OAuth -----------------------------------------------------------------

    def client_authorized(self, client_id, client_secret):
        return _same_secret(client_id, self._settings.client_id) and _same_secret(
            client_secret, self._settings.client_secret
        )

    def issue_access_token(self):
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Dropping the expired ones keeps a long-running demo from growing.
            self._access_tokens = {t: end for t, end in self._access_tokens.items() if end > now}
            self._access_tokens[token] = now + self._settings.token_lifetime_s
        return token

    def access_token_valid(self, token):
        with self._lock:
            expiry = self._access_tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    # -- Sessions --------------------------------------------------------------

    def log_in(self, username, password):
        """A new session token, or the ApiError ThingSpace answers a bad login with."""
        expected = self._settings.users.get(username)
        with self._lock:
            if self._failed_logins[username] >= FAILED_LOGINS_BEFORE_LOCK:
                raise ApiError(400, ACCOUNT_LOCKED, f"User {username} is locked after repeated failed logins")
            if expected is None or not _same_secret(password, expected):
                self._failed_logins[username] += 1
                raise ApiError(400, INVALID_CREDENTIALS, "Invalid username or password")
            del self._failed_logins[username]
            session = Session(str(uuid.uuid4()), username, self._settings.account_name, time.monotonic())
            self._sessions[session.token] = session
        return session.token

    def use_session(self, token):
        """The live session named by ``token``, its idle clock restarted."""
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                raise ApiError(401, SESSION_INVALID, "SessionToken Invalid")
            if now - session.last_used > self._settings.session_idle_s:
                raise ApiError(401, SESSION_EXPIRED, "SessionToken Expired")
            session.last_used = now
        return session

    def log_out(self, token):
        with self._lock:
            self._sessions.pop(token, None)

    # -- Callback registrations ------------------------------------------------

    def register_callback(self, registration):
        with self._lock:
            self._registrations[registration.account_name, registration.name] = registration

    def callback_registrations(self, account_name):
        with self._lock:
            return [r for r in self._registrations.values() if r.account_name == account_name]

    def callback_registration(self, account_name, name):
        with self._lock:
            return self._registrations.get((account_name, name))

    def unregister_callback(self, account_name, name):
        """Whether there was such a registration to remove."""
        with self._lock:
            return self._registrations.pop((account_name, name), None) is not None

    # -- Devices marked failing ------------------------------------------------

    def mark_failing(self, device_id, failure):
        with self._lock:
            self._failing_devices[device_id] = failure

    def failure_of(self, device_ids):
        """The failure marked on any of a device's ``{kind, id}``, or None."""
        with self._lock:
            return next(
                (self._failing_devices[d["id"]] for d in device_ids if d["id"] in self._failing_devices),
                None,
            )

    # -- Recorded requests -----------------------------------------------------

    def record_request(self, entry):
        """Keep ``entry`` in arrival order; ``record_answer`` completes it later."""
        with self._lock:
            self._requests.append(entry)

    def record_answer(self, entry, status, document):
        with self._lock:
            entry.update(status=status, response=document)

    def recorded_requests(self):
        # Copies: an entry still waiting for its answer changes under the lock.
        with self._lock:
            return [dict(entry) for entry in self._requests]

    def reset(self):
        """Forget requests, sessions, login failures and failing marks; keep registrations."""
        with self._lock:
            self._requests.clear()
            self._sessions.clear()
            self._failed_logins.clear()
            self._failing_devices.clear()
