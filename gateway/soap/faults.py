"""The SOAP faults a legacy client receives, from the gateway's errors.

Our own refusals are ``s:Client`` (the request is wrong) or ``s:Server`` (we
or ThingSpace failed); ThingSpace's errors keep their ``errorCode`` as the
faultcode, as the legacy service reported them.
"""

from spyne import Fault

from gateway.exceptions import RequestInvalid, SessionMissing, UpstreamError, UpstreamUnavailable

# ThingSpace's codes for a session that timed out or was logged out: legacy
# clients react to this exact text by calling LogIn again.
SESSION_EXPIRED_CODES = frozenset(
    {
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired",
        "UnifiedWebService.REQUEST_FAILED.SessionToken.Invalid",
    }
)
SESSION_EXPIRED_TEXT = "The session has expired."


class ClientFault(Fault):
    """The request itself is wrong; sending it again unchanged will fail again."""

    def __init__(self, faultstring):
        super().__init__("Client", faultstring)


class ServerFault(Fault):
    """The gateway or ThingSpace failed; the request may succeed later."""

    def __init__(self, faultstring):
        super().__init__("Server", faultstring)


class UpstreamFault(Fault):
    """ThingSpace refused the call; its errorCode is the faultcode, verbatim."""


def to_fault(error):
    if isinstance(error, RequestInvalid | SessionMissing):
        return ClientFault(str(error))
    if isinstance(error, UpstreamError):
        text = SESSION_EXPIRED_TEXT if error.code in SESSION_EXPIRED_CODES else error.message
        return UpstreamFault(error.code, text)
    if isinstance(error, UpstreamUnavailable):
        return ServerFault(str(error))
    raise TypeError(f"no fault for {type(error).__name__}")
