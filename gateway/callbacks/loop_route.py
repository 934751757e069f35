"""ThingSpace's callbacks served on the gunicorn worker's event loop, with no thread of their own.

A callback needs little CPU and then waits for its commit, which it shares
with the others received meanwhile. Through a thread, as every other request
goes (``gateway.whole_requests``), each one passed the worker's loop, a
request thread and the thread leading the commit, waiting for the GIL at
each: more CPU in hand-offs than in the callback's own work (bench/RESULTS.md).
Here the loop that read the request whole checks it and queues it for the
group commit; the thread that commits answers it.

What the WSGI middleware does for the other requests is done here the same
way: the request id (``logs.RequestIds``), the client's address behind a
trusted proxy (``client_address.TrustedProxyFix``), the access line
(``access.AccessLog``). The body limit is the worker's framing's
(``[server] max_body_bytes``), as for every request.
"""

import time
from urllib.parse import unquote_to_bytes

from gateway.access import log_access
from gateway.client_address import client_of
from gateway.logs import REQUEST_ID_HEADER, request_id, request_id_for


class CallbackLoopRoute:
    """The worker's ``loop_route`` (see ``whole_requests.LoopRequest``) for POSTs below ``path``.

    ``ready()``: whether the receiver can check a callback without the store
    (it has read the gateway's callback credentials once); until then
    callbacks go to threads, which may wait for the store. ``mounts``: every
    path the WSGI application dispatches on; one below ``path`` keeps its own.
    """

    def __init__(self, path, receiver, trusted_proxies, ready, mounts=()):
        self._prefix = path + "/"
        self._within = tuple(mount + "/" for mount in mounts if mount.startswith(self._prefix))
        self._receiver = receiver
        self._trusted = trusted_proxies
        self._ready = ready

    def takes(self, method, target):
        if method != "POST":
            return False
        path = _path(target)
        return path.startswith(self._prefix) and not (path + "/").startswith(self._within) and self._ready()

    def serve(self, request, respond):
        started = time.monotonic()
        path = _path(request.target)
        this_request = request_id_for(request.fields.get("x-request-id", ""))

        def answer(status, headers, body):  # in this request's context (its id), in whichever thread
            respond(status, [*headers, (REQUEST_ID_HEADER, this_request)], body)
            log_access(request.method, path, status.split(" ", 1)[0], started)

        token = request_id.set(this_request)
        try:
            remote_addr = client_of(request.peer, request.fields.get("x-forwarded-for"), self._trusted)
            self._receiver.on_loop(remote_addr, request.method, path[len(self._prefix) - 1 :], request.body, answer)
        finally:
            request_id.reset(token)

    def expire_overdue(self):
        self._receiver.expire_overdue()


def _path(target):
    """The path of a request ``target`` as WSGI's SCRIPT_NAME + PATH_INFO: %-unquoted, Latin-1 text."""
    path = target.split("?", 1)[0]
    if not path.startswith("/"):  # absolute-form: scheme://authority/path
        path = "/" + path.split("://", 1)[-1].partition("/")[2]
    return unquote_to_bytes(path).decode("latin-1")
