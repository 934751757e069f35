"""The gateway as one WSGI application, and what it needs at run time."""

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from gateway.access import AccessLog
from gateway.callbacks.delivery import DeliveryWorker
from gateway.callbacks.loop_route import CallbackLoopRoute
from gateway.callbacks.policy import ListenerPolicy
from gateway.callbacks.receiver import CallbackReceiver
from gateway.callbacks.registration import Registrar
from gateway.client_address import TrustedProxyFix
from gateway.health import Readiness, healthz
from gateway.limits import BodyLimit
from gateway.logs import RequestIds
from gateway.metrics import metrics_app
from gateway.request_memory import RequestMemory
from gateway.soap.application import GatewayApplication, ServiceEndpoint
from gateway.soap.services import SERVICES
from gateway.store import open_store
from gateway.thingspace import ThingSpace

SERVICE_ROOT = "/api/v2"


def service_path(name):
    return f"{SERVICE_ROOT}/{name}.svc"


class Runtime:
    """The long-lived parts every request shares: upstream client, store, request memory, listener policy, registrar."""

    def __init__(self, config):
        self.config = config
        self.thingspace = ThingSpace(config.upstream)
        # Lazy: the server opened and migrated it before starting this worker,
        # which must come up (and answer 503) even while the store is down.
        self.store = open_store(config.store, lazy=True)
        self.requests = RequestMemory(self.store)
        self.listener_policy = ListenerPolicy.from_config(config)
        self.registrar = Registrar(config, self.thingspace, self.store, self.listener_policy)


class Gateway:
    """The gateway's WSGI application, with this process's delivery worker and request memory running."""

    def __init__(self, config):
        runtime = Runtime(config)
        self._requests = runtime.requests.start()
        self._worker = DeliveryWorker(
            runtime.store, config.callbacks, config.store.retain_s, runtime.listener_policy
        ).start()
        runtime.registrar.registered = self._worker.wake
        mounts = {service_path(name): _endpoint(config, name, runtime) for name in SERVICES}
        receiver = mounts[config.callbacks.path] = CallbackReceiver(
            runtime.store, runtime.registrar.gateway_credentials, config.callbacks.allowed_sources, self._worker
        )
        mounts["/healthz"] = healthz
        mounts["/readyz"] = Readiness(runtime.store, runtime.thingspace, self._worker)
        mounts["/metrics"] = metrics_app(runtime.store)
        app = BodyLimit(DispatcherMiddleware(_not_found, mounts), config.server.max_body_bytes)
        # Behind nginx the client's address and URL (for the WSDL's soap:address) are in X-Forwarded-*.
        app = TrustedProxyFix(app, config.server.trusted_proxies)
        self._app = RequestIds(AccessLog(app))
        # Under gunicorn (gateway.whole_requests), callbacks are served on the worker's event loop,
        # unless one would wait: for the store (the credentials are not read yet), or for a sender.
        self.loop_route = CallbackLoopRoute(
            config.callbacks.path,
            receiver,
            config.server.trusted_proxies,
            lambda: runtime.registrar.credentials_known() and not self._worker.behind(),
            mounts,
        )

    def __call__(self, environ, start_response):
        return self._app(environ, start_response)

    def close(self, timeout=None):
        """Let the worker finish the delivery it is sending, then stop it (it gives back what it
        holds unsent, for another process to deliver at once); write the requests still queued."""
        self._worker.stop(timeout)
        self._requests.stop(timeout)


def service_document(config, name):
    """The flat WSDL of service ``name`` at the configured public URL, or host and port."""
    public_url = config.server.public_url or f"http://{config.server.host}:{config.server.port}"
    return _endpoint(config, name).app.interface.docs.wsdl11.document("singlewsdl", public_url + service_path(name))


def _endpoint(config, name, runtime=None):
    app = GatewayApplication(SERVICES[name], runtime)
    return ServiceEndpoint(app, service_path(name), config.server.max_body_bytes, config.server.public_url)


def _not_found(environ, start_response):
    services = ", ".join(service_path(name) for name in SERVICES)
    response = Response(f"Not found. Services: {services}\n", status=404, mimetype="text/plain")
    return response(environ, start_response)
