"""The ``m2m-gateway`` command line."""

import argparse
import contextlib
import getpass
import os
import sys

from gateway import __version__, config, logs
from gateway.exceptions import ConfigError, GatewayError


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure()
    try:
        return args.command(args) or 0
    except ConfigError as error:
        print(f"m2m-gateway: configuration error: {error}", file=sys.stderr)
        return 2
    except GatewayError as error:
        print(f"m2m-gateway: {error}", file=sys.stderr)
        return 1


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

    callbacks = commands.add_parser(
        "callbacks",
        help="legacy callback registrations and the delivery outbox",
        description="See and change legacy callback registrations; see and re-drive undelivered callbacks.",
    )
    _callbacks_commands(callbacks)

    trace = commands.add_parser(
        "trace",
        help="the story of one GoToState: forwarded, called back, every delivery attempt",
        description="Tell what the store knows of one GoToState request: when it was forwarded, every callback "
        "ThingSpace sent for it, every attempt to deliver each to the legacy listener, and where each stands now.",
    )
    trace.add_argument("request_id", metavar="REQUEST_ID", help="the RequestId GoToState answered")
    trace.add_argument("--json", action="store_true", help="one JSON document instead of a timeline")
    _config_option(trace)
    trace.set_defaults(command=_trace)

    listener = commands.add_parser(
        "demo-listener",
        help="a legacy callback listener that prints what it receives",
        description="Answer 200 to every POST and print the SOAP callback envelope.",
    )
    listener.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    listener.add_argument("--port", type=int, default=8082, help="port to listen on (default %(default)s)")
    listener.set_defaults(command=_demo_listener)

    demo = commands.add_parser(
        "demo",
        help="run the gateway with the simulator behind it (make run)",
        description="Start the simulator and the gateway, print URLs and ready-to-paste curl commands.",
    )
    _config_option(demo)
    demo.add_argument("--listener-port", type=int, default=8082, help="port of the demo listener (default %(default)s)")
    demo.set_defaults(command=_demo)
    return parser


def _callbacks_commands(parser):
    actions = parser.add_subparsers(title="actions", required=True, metavar="ACTION")

    def action(name, command, help, description):
        sub = actions.add_parser(name, help=help, description=description)
        _config_option(sub)
        sub.set_defaults(command=command)
        return sub

    m2m_help = "ThingSpace M2M user to log in as; the password is read from $THINGSPACE_PASSWORD or prompted"
    register = action(
        "register",
        _callbacks_register,
        "register a legacy listener, and the gateway with ThingSpace",
        "Keep ACCOUNT's SERVICE listener URL here and register the gateway's receiver with ThingSpace.",
    )
    register.add_argument("account", metavar="ACCOUNT")
    register.add_argument("service", metavar="SERVICE", help="StateService")
    register.add_argument("url", metavar="URL", help="the legacy listener's URL")
    register.add_argument("--listener-username", default="", help="Username to put in its envelopes")
    register.add_argument(
        "--listener-password",
        action="store_true",
        help="put a Password in its envelopes: read from $LISTENER_PASSWORD or prompted",
    )
    register.add_argument("--m2m-user", required=True, help=m2m_help)

    unregister = action(
        "unregister", _callbacks_unregister, "remove a registration, here and at ThingSpace", "Remove ACCOUNT's SERVICE registration."
    )
    unregister.add_argument("account", metavar="ACCOUNT")
    unregister.add_argument("service", metavar="SERVICE")
    unregister.add_argument("--m2m-user", required=True, help=m2m_help)

    action("list", _callbacks_list, "the legacy listeners registered here", "List the legacy listeners registered here.")
    outbox_help = {"pending": "callbacks waiting for delivery", "dead": "callbacks that used up their attempts"}
    for state, help in outbox_help.items():
        action(state, _callbacks_outbox, help, f"List the {help}.").set_defaults(state=state)

    retry = action("retry", _callbacks_retry, "re-drive dead callbacks", "Put dead callbacks back to pending, attempts reset.")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", metavar="ID", type=int, nargs="?", help="one callback, by the id `dead` lists")
    which.add_argument("--all", action="store_true", help="every dead callback")


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
    from gateway.soap.services import SERVICES

    return sorted(SERVICES)


def _serve(args):
    from gateway import server

    server.run(config.load(args.config))


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


def _store(args):
    from gateway.store import open_store

    return open_store(config.load(args.config).store)


@contextlib.contextmanager
def _m2m_session(args):
    """A ThingSpace session for an operator command, logged out afterwards."""
    from gateway.thingspace import ThingSpace

    settings = config.load(args.config)
    thingspace = ThingSpace(settings.upstream)
    password = os.environ.get("THINGSPACE_PASSWORD") or getpass.getpass(f"ThingSpace password for {args.m2m_user}: ")
    token = thingspace.login(args.m2m_user, password)
    try:
        yield settings, thingspace, token
    finally:
        thingspace.logout(token)


def _registrar(settings, thingspace):
    from gateway.callbacks.policy import ListenerPolicy
    from gateway.callbacks.registration import Registrar
    from gateway.store import open_store

    return Registrar(settings, thingspace, open_store(settings.store), ListenerPolicy.from_config(settings))


def _callbacks_register(args):
    password = ""
    if args.listener_password:
        password = os.environ.get("LISTENER_PASSWORD") or getpass.getpass("Password for the listener's envelopes: ")
    with _m2m_session(args) as (settings, thingspace, token):
        _registrar(settings, thingspace).register(
            token, args.account, args.service, args.url, args.listener_username, password
        )
    print(f"registered: {args.account} {args.service} -> {args.url}")


def _callbacks_unregister(args):
    with _m2m_session(args) as (settings, thingspace, token):
        _registrar(settings, thingspace).unregister(token, args.account, args.service)
    print(f"unregistered: {args.account} {args.service}")


def _callbacks_list(args):
    for registration in _store(args).registrations():
        print(f"{registration.account}\t{registration.service}\t{registration.url}\t{registration.username}")


def _callbacks_outbox(args):
    from gateway.logs import iso_utc
    from gateway.store.records import PENDING

    store = _store(args)
    entries, last_attempts = store.outbox(args.state), store.last_attempts(args.state)
    print("id\taccount\tservice\trequestId\tstate\tattempts\treceived\tnext retry\tlast attempt\tlast error")
    for entry in entries:
        next_retry = iso_utc(entry.next_attempt_at) if entry.state == PENDING else "-"
        last = last_attempts.get(entry.id)
        last_attempt = f"{iso_utc(last.at)} #{last.number} {last.outcome}" if last else "-"
        print(
            f"{entry.id}\t{entry.account}\t{entry.service}\t{entry.request_id}\t{entry.state}\t{entry.attempts}"
            f"\t{iso_utc(entry.received_at)}\t{next_retry}\t{last_attempt}\t{entry.last_error or '-'}"
        )


def _callbacks_retry(args):
    import time

    store = _store(args)
    if args.all:
        print(f"{store.retry_all(time.time())} callbacks back to pending")
        return 0
    if not store.retry(args.id, time.time()):
        print(f"m2m-gateway: no dead callback with id {args.id}", file=sys.stderr)
        return 1
    print(f"callback {args.id} back to pending")
    return 0


def _trace(args):
    import json

    from gateway import trace

    store = _store(args)
    document = trace.story(
        args.request_id, store.forwarded_request(args.request_id), store.request_callbacks(args.request_id)
    )
    if document is None:
        print(f"m2m-gateway: request {args.request_id!r} is not in the store", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2) if args.json else trace.timeline(document))
    return 0


def _demo_listener(args):
    from gateway import demo_listener

    demo_listener.serve(args.host, args.port)


def _demo(args):
    from gateway.demo import run

    return run(config.load(args.config), args.config, args.listener_port)
