"""Legacy callback registrations: the listener kept here, the gateway registered upstream.

A legacy client registers its listener (URL and the credentials to put in its
envelopes); ThingSpace gets the gateway's own receiver URL for that account
and service instead, with the gateway's credentials, so that every callback
comes through the bridge.
"""

from urllib.parse import quote, urlsplit

from gateway.exceptions import ListenerRefused, RequestInvalid

# The callback services whose JSON the gateway can turn into legacy envelopes.
BRIDGED_SERVICES = ("StateService",)


class Registrar:
    # Called once a registration is stored: the gateway wakes its delivery
    # worker, so that callbacks waiting for that listener go now, not at its
    # next poll. Nothing to wake in a command-line process.
    registered = staticmethod(lambda: None)

    def __init__(self, config, thingspace, store, listener_policy):
        self._config = config
        self._thingspace = thingspace
        self._store = store
        self._listener_policy = listener_policy
        self._credentials = None

    def register(self, session_token, account, service, url, username, password):
        _check_account(account)
        _check_service(service)
        _check_listener_url(url)
        try:
            self._listener_policy.check(url)
        except ListenerRefused as refused:
            raise RequestInvalid("Url", str(refused)) from None
        # Before ThingSpace hears of it: a store that is down refuses the whole registration.
        self._store.health()
        gateway_username, gateway_password = self.gateway_credentials()
        self._thingspace.register_callback(
            session_token, account, service, self.receiver_url(account, service), gateway_username, gateway_password
        )
        self._store.put_registration(account, service, url, username or "", password or "")
        self.registered()

    def unregister(self, session_token, account, service):
        _check_account(account)
        _check_service(service)
        self._store.health()
        self._thingspace.unregister_callback(session_token, account, service)
        self._store.delete_registration(account, service)

    def registrations(self, session_token, account):
        _check_account(account)
        registrations = self._store.registrations(account)
        # Asking ThingSpace proves the session may see this account.
        self._thingspace.callbacks(session_token, account)
        return registrations

    def gateway_credentials(self):
        """What ThingSpace must echo in every callback: configured, or generated once."""
        if self._credentials is None:
            settings = self._config.callbacks
            if settings.username and settings.password:
                self._credentials = settings.username, settings.password
            else:
                self._credentials = self._store.callback_credentials()
        return self._credentials

    def credentials_known(self):
        """Whether ``gateway_credentials()`` answers without the store now."""
        settings = self._config.callbacks
        return self._credentials is not None or bool(settings.username and settings.password)

    def receiver_url(self, account, service):
        return f"{self._config.callback_url()}/{quote(account, safe='')}/{quote(service, safe='')}"


def _check_account(account):
    if not account or not account.strip():
        raise RequestInvalid("AccountName", "is required")


def _check_service(service):
    if service not in BRIDGED_SERVICES:
        raise RequestInvalid(
            "ServiceName", f"must be one of {', '.join(BRIDGED_SERVICES)}: the callbacks this gateway bridges"
        )


def _check_listener_url(url):
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestInvalid("Url", "must be the listener's absolute http:// or https:// URL")
