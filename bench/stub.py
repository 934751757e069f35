"""An nginx that answers fixed bodies at once: the upstream stub no benchmark can outrun.

nginx (installed by ``make test``) runs as a child process on 127.0.0.1 with a
configuration of its own in a temporary directory: ``return 200 '...'`` per
path, kept-alive connections without a request limit, no access log. It
reads and discards each request body, and costs a few microseconds of CPU a
request, so that what is measured is the gateway (or the floor), never the stub.
"""

import os
import shutil

from bench.common import HOST, Child

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


def nginx_path():
    for candidate in NGINX_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    raise SystemExit("nginx is not installed: `make test` installs it (apt-get install nginx)")


def nginx_stub(port, answers, workdir, content_type="application/json"):
    """A started nginx Child on ``port`` answering ``answers`` ({path: bytes}) with 200, anything else 404."""
    prefix = workdir / f"nginx-{port}"
    (prefix / "temp").mkdir(parents=True)
    locations = "\n".join(
        f"        location = {path} {{ return 200 '{_nginx_string(body)}'; }}" for path, body in answers.items()
    )
    (prefix / "nginx.conf").write_text(
        f"""{"user root;" if os.getuid() == 0 else ""}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/temp;
    keepalive_requests 1000000;
    client_max_body_size 64m;
    keepalive_timeout 120s;
    default_type {content_type};
    server {{
        listen {HOST}:{port} backlog=1024;
{locations}
        location / {{ return 404 '{{"errorCode":"NotFound","errorMessage":"not stubbed"}}'; }}
    }}
}}
"""
    )
    argv = [nginx_path(), "-p", prefix, "-c", prefix / "nginx.conf", "-g", "daemon off;"]
    return Child(argv, log_path=prefix / "nginx.log", port=port).start()


def _nginx_string(body):
    text = body.decode()
    if "'" in text or "\\" in text or "$" in text:
        raise ValueError(f"a stub answer nginx would not return verbatim: {text!r}")
    return text
