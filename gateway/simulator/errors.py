"""ThingSpace's error document, and the codes the simulator answers with.

The gateway matches on ``errorCode``, never on the message, so the codes are
the contract; the messages only help a human reading a log.
"""

import json

from werkzeug.wrappers import Response

_PREFIX = "UnifiedWebService.REQUEST_FAILED."

# ThingSpace answers 401 for a refused bearer and for a refused VZ-M2M session
# alike; the code says which. The AccessToken codes are not documented publicly
# (CONTRACT.md): the gateway tells them apart from the SessionToken ones only.
ACCESS_TOKEN_EXPIRED = _PREFIX + "AccessToken.Expired"
ACCESS_TOKEN_INVALID = _PREFIX + "AccessToken.Invalid"
SESSION_EXPIRED = _PREFIX + "SessionToken.Expired"
SESSION_INVALID = _PREFIX + "SessionToken.Invalid"
INVALID_CREDENTIALS = _PREFIX + "InvalidCredentials"
ACCOUNT_LOCKED = _PREFIX + "AccountLocked"
ACCOUNT_NOT_FOUND = _PREFIX + "AccountNotFound"
CALLBACK_NOT_FOUND = _PREFIX + "CallbackNotFound"
INVALID_REQUEST = _PREFIX + "InvalidRequest"
NOT_FOUND = _PREFIX + "NotFound"
METHOD_NOT_ALLOWED = _PREFIX + "MethodNotAllowed"
INTERNAL_ERROR = _PREFIX + "InternalError"
# Only injected faults answer with these two (see faults.py).
RATE_LIMIT_EXCEEDED = _PREFIX + "RateLimitExceeded"
UNEXPECTED_ERROR = _PREFIX + "UnexpectedError"


class ApiError(Exception):
    """A request ThingSpace refuses; answered as ``{errorCode, errorMessage}``."""

    def __init__(self, status, code, message):
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{code}: {message}")


def invalid_request(field, problem):
    """The 400 for a request field that breaks a rule; the message names the field."""
    return ApiError(400, INVALID_REQUEST, f"{field}: {problem}")


def json_response(document, status=200):
    return Response(json.dumps(document), status=status, mimetype="application/json")


def error_response(status, code, message):
    return json_response({"errorCode": code, "errorMessage": message}, status)
