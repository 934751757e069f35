"""Every error the gateway raises on purpose.

The SOAP edge turns each into the fault a legacy client expects; nothing here
knows about SOAP or HTTP.
"""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration value is missing or unusable; start-up stops."""

    def __init__(self, section, key, problem):
        self.section, self.key, self.problem = section, key, problem
        super().__init__(f"[{section}] {key}: {problem}")


class ProxyUnusable(GatewayError):
    """The environment names a proxy the gateway cannot speak to (an ``https://`` one): the caller says which setting it serves."""


class RequestInvalid(GatewayError):
    """The legacy request breaks a rule of the legacy contract.

    Raised before anything is sent upstream; ``field`` names the element
    (its path below Input) and ``rule`` says what was wrong with it.
    """

    def __init__(self, field, rule):
        self.field, self.rule = field, rule
        super().__init__(f"{field}: {rule}")


class SessionMissing(GatewayError):
    """The call needs the v2:token header that LogIn returned, and has none."""

    def __init__(self):
        super().__init__("The token header is missing: call LogIn and send its SessionToken as v2:token.")


class UpstreamError(GatewayError):
    """ThingSpace answered with its error document ``{errorCode, errorMessage}``."""

    def __init__(self, code, message, status):
        self.code, self.message, self.status = code, message, status
        super().__init__(f"{code}: {message}")


class UpstreamUnavailable(GatewayError):
    """ThingSpace could not be reached, or answered outside its own error format."""


class ConnectFailed(GatewayError):
    """No connection to an outbound server could be made: nothing was sent.

    ``reason`` completes "could not be reached ..."; ``worth_retrying`` is
    false where trying again cannot help (a certificate refused, a proxy
    refusing the tunnel); ``timed_out`` when connecting took too long;
    ``tls_problem``, what OpenSSL said refusing the TLS handshake.
    """

    def __init__(self, reason, worth_retrying, timed_out=False, tls_problem=None):
        self.reason, self.worth_retrying = reason, worth_retrying
        self.timed_out, self.tls_problem = timed_out, tls_problem
        super().__init__(f"could not be reached {reason}")


class ExchangeFailed(GatewayError):
    """The request may have reached the outbound server, but no whole answer came back.

    Never to be sent again on the gateway's own: the server may have acted on it.
    """

    def __init__(self, timed_out):
        self.timed_out = timed_out
        super().__init__("no answer in time" if timed_out else "the connection closed without an answer")


class StoreUnavailable(GatewayError):
    """The store cannot be read or written now: its server is down, the file is locked, the disk is full.

    Transient by nature: the caller answers honestly (503, a server fault)
    or retries later; nothing it acknowledged is lost.
    """


class DeliveryStalled(GatewayError):
    """No delivery pass completed for longer than ``[callbacks] delivery_stall_s``: /readyz says so."""


class ListenerRefused(GatewayError):
    """A legacy listener's URL breaks the listener policy: the gateway will not post there."""

    def __init__(self, url_host, rule):
        self.rule = rule
        super().__init__(f"{url_host}: {rule}")
