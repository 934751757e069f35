"""The ``m2m-gateway`` command line."""

import argparse
import logging
import sys

from gateway import __version__, config
from gateway.exceptions import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # Spyne logs each application it builds, and a traceback for every client
    # fault; the fault itself says it all.
    logging.getLogger("spyne").setLevel(logging.WARNING)
    logging.getLogger("spyne.application.client").setLevel(logging.CRITICAL)
    try:
        return args.command(args) or 0
    except ConfigError as error:
        print(f"m2m-gateway: configuration error: {error}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(
        prog="m2m-gateway",
        description="The legacy nPhase SOAP API (Unified Web Service v2) in front of ThingSpace REST.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway", description="Run the gateway.")
    _config_option(serve)
    serve.set_defaults(command=_serve)

    simulator = commands.add_parser(
        "simulator",
        help="run the ThingSpace simulator alone",
        description="Run the embedded ThingSpace REST simulator: OAuth, sessions, goToState, callbacks.",
    )
    _simulator_options(simulator)
    simulator.set_defaults(command=_simulator)

    wsdl = commands.add_parser(
        "wsdl", help="print a service's WSDL", description="Print a legacy service's WSDL to standard output."
    )
    wsdl.add_argument("service", metavar="SERVICE", help="one of: " + ", ".join(_service_names()))
    _config_option(wsdl)
    wsdl.set_defaults(command=_wsdl)

    demo = commands.add_parser(
        "demo",
        help="run the gateway with the simulator behind it (make run)",
        description="Start the simulator and the gateway, print URLs and ready-to-paste curl commands.",
    )
    _config_option(demo)
    demo.set_defaults(command=_demo)
    return parser


def _config_option(parser):
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="INI file read over the embedded defaults (conf/gateway.ini); "
        "M2MGW_<SECTION>_<KEY> environment variables override both",
    )


def _simulator_options(parser):
    from gateway.simulator import SimulatorSettings

    defaults = SimulatorSettings()
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port to listen on (default %(default)s)")
    parser.add_argument("--client-id", default=defaults.client_id, help="OAuth client key (default %(default)s)")
    parser.add_argument("--client-secret", default=defaults.client_secret, help="OAuth client secret")
    parser.add_argument(
        "--user",
        action="append",
        metavar="NAME:PASSWORD",
        help="an M2M user; repeatable (default: demo:demo-password)",
    )
    parser.add_argument("--account", default=defaults.account_name, help="the users' account (default %(default)s)")
    parser.add_argument(
        "--session-idle-s", type=float, default=defaults.session_idle_s, help="session idle timeout (default %(default)s)"
    )
    parser.add_argument(
        "--callback-retry-s",
        type=float,
        default=defaults.callback_retry_s,
        help="delay between callback retries (default %(default)s)",
    )


def _service_names():
    from gateway.soap.application import SERVICES

    return sorted(SERVICES)


def _serve(args):
    from werkzeug.serving import run_simple

    from gateway.app import SERVICE_ROOT, create_app

    settings = config.load(args.config)
    app = create_app(settings)
    logging.getLogger("gateway").info(
        "gateway listening on http://%s:%d%s/ (upstream %s)",
        settings.server.host,
        settings.server.port,
        SERVICE_ROOT,
        settings.upstream.base_url,
    )
    run_simple(settings.server.host, settings.server.port, app, threaded=True)


def _simulator(args):
    from gateway.simulator import SimulatorSettings, serve

    users = dict(user.split(":", 1) for user in args.user) if args.user else SimulatorSettings().users
    serve(
        SimulatorSettings(
            host=args.host,
            port=args.port,
            client_id=args.client_id,
            client_secret=args.client_secret,
            users=users,
            account_name=args.account,
            session_idle_s=args.session_idle_s,
            callback_retry_s=args.callback_retry_s,
        )
    )


def _wsdl(args):
    from gateway.app import service_document

    settings = config.load(args.config)
    if args.service not in _service_names():
        print(f"m2m-gateway: unknown service {args.service!r}; one of: {', '.join(_service_names())}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(service_document(settings, args.service))
    return 0


def _demo(args):
    from gateway.demo import run

    return run(config.load(args.config), args.config)
