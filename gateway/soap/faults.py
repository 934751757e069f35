"""The SOAP faults a legacy client receives, from the gateway's errors.

Our own refusals are ``s:Client`` (the request is wrong) or ``s:Server`` (we
or ThingSpace failed), with WCF's own codes where WCF had one
(``a:DeserializationFailed``, ``s:VersionMismatch``); ThingSpace's errors keep
their ``errorCode`` as the faultcode, as the legacy service reported them.
"""

from spyne import Fault

from gateway import ns
from gateway.exceptions import RequestInvalid, SessionMissing, StoreUnavailable, UpstreamError, UpstreamUnavailable
from gateway.thingspace import SESSION_EXPIRED_CODES

# What the legacy service said for those codes: legacy clients react to this
# exact text by calling LogIn again.
SESSION_EXPIRED_TEXT = "The session has expired."
STORE_UNAVAILABLE_TEXT = "The gateway cannot reach its store right now; nothing was changed. Try again shortly."


class GatewayFault(Fault):
    """A fault the gateway raises: ``code`` is the faultcode written, a QName
    whose prefix is ``s:`` or declared in ``code_nsmap``."""

    code = "s:Server"
    code_nsmap = {}

    def __init__(self, faultstring):
        super().__init__(self.code.split(":")[-1], faultstring)


class ClientFault(GatewayFault):
    """The request itself is wrong; sending it again unchanged will fail again."""

    code = "s:Client"


class ServerFault(GatewayFault):
    """The gateway or ThingSpace failed; the request may succeed later."""


class VersionMismatch(GatewayFault):
    """Not a SOAP 1.1 envelope (SOAP 1.1, section 4.4.1)."""

    code = "s:VersionMismatch"


class DeserializationFailed(GatewayFault):
    """The body does not match the data contract: WCF's dispatcher fault."""

    code = "a:DeserializationFailed"
    code_nsmap = {"a": ns.WCF_DISPATCHER}

    def __init__(self, path, problem):
        super().__init__(f"The formatter threw an exception while trying to deserialize the message: {path}: {problem}")


class UpstreamFault(Fault):
    """ThingSpace refused the call; its errorCode is the faultcode, verbatim."""

    code_nsmap = {}

    @property
    def code(self):
        return self.faultcode


def is_client_fault(fault):
    """Whether the client's own request is at fault (ThingSpace's refusals are not ours to judge)."""
    if isinstance(fault, ClientFault | DeserializationFailed | VersionMismatch):
        return True
    return not isinstance(fault, GatewayFault | UpstreamFault) and fault.faultcode.startswith("Client")


def fault_outcome(fault):
    """The ``outcome`` label of a fault in the request metrics."""
    if is_client_fault(fault):
        return "client_fault"
    return "upstream_fault" if isinstance(fault, UpstreamFault) else "server_fault"


def to_fault(error):
    if isinstance(error, RequestInvalid | SessionMissing):
        return ClientFault(str(error))
    if isinstance(error, UpstreamError):
        text = SESSION_EXPIRED_TEXT if error.code in SESSION_EXPIRED_CODES else error.message
        return UpstreamFault(error.code, text)
    if isinstance(error, UpstreamUnavailable):
        return ServerFault(str(error))
    if isinstance(error, StoreUnavailable):
        # Where the store is and what it said are for the operator's log, not the client.
        return ServerFault(STORE_UNAVAILABLE_TEXT)
    raise TypeError(f"no fault for {type(error).__name__}")
