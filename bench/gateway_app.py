"""The gateway as a WSGI ``application`` for gunicorn, configured like ``m2m-gateway serve``.

Used by the small-request benchmark only when ``gateway/wsgi.py`` does not
exist. Configuration as usual: embedded defaults, then ``$BENCH_GATEWAY_CONFIG`` (a
file, if set), then ``M2MGW_<SECTION>_<KEY>`` variables. Without
``--preload`` every gunicorn worker imports this after the fork, so each has
its own store connections and delivery worker, as separate ``serve``
processes would.
"""

import os

from gateway import config, logs
from gateway.app import Gateway

settings = config.load(os.environ.get("BENCH_GATEWAY_CONFIG") or None)
logs.configure(settings.logging.format, settings.logging.level)
application = Gateway(settings)
