"""``make run``: the simulator, the demo listener and the gateway as three processes, and how to call them.

Ctrl-C (or SIGTERM, or the terminal going away) stops the three and exits 0.
Each child runs in a process group of its own, so that only the demo gets a
terminal's Ctrl-C and stops each child once, gracefully, with SIGTERM (a
gunicorn hit by the terminal's SIGINT and then the demo's SIGTERM was seen to
wait out its graceful timeout in a worker's exit). What does not stop in time
is killed with its group.
"""

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from gateway import ns
from gateway import processes as children
from gateway.app import service_path
from gateway.exceptions import ConfigError
from gateway.simulator import SimulatorSettings
from gateway.soap.conventions import soap_action

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """One of STOP_SIGNALS arrived."""


def _stop(signum, frame):
    raise _Stop()


def run(settings, config_path=None, listener_port=8082):
    upstream = urlsplit(settings.upstream.base_url)
    if upstream.hostname not in LOOPBACK or upstream.port is None:
        raise ConfigError("upstream", "base_url", "the demo runs the simulator there: it must be http://127.0.0.1:PORT")
    config_args = ["--config", config_path] if config_path else []
    commands = {
        "the simulator": ["simulator", "--host", upstream.hostname, "--port", str(upstream.port)],
        "the demo listener": ["demo-listener", "--port", str(listener_port)],
        "the gateway": ["serve", *config_args],
    }
    processes = {}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)
    try:
        for name, arguments in commands.items():
            processes[name] = children.start(arguments, cwd=None)
        _wait_until_listening(upstream.hostname, upstream.port, processes.values())
        _wait_until_listening("127.0.0.1", listener_port, processes.values())
        _wait_until_listening(settings.server.host, settings.server.port, processes.values())
        print(instructions(settings, f"http://127.0.0.1:{listener_port}/", _trace_command(config_path)), flush=True)
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.2)
        name, process = next((name, process) for name, process in processes.items() if process.poll() is not None)
        print(f"m2m-gateway demo: {name} exited with status {process.returncode}; stopping", file=sys.stderr)
        return 1
    except _Stop:
        return 0
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the stopping short
            signal.signal(signum, signal.SIG_IGN)
        _stop_all(processes.values(), settings.callbacks.timeout_s + 20)


def _stop_all(processes, timeout_s):
    """SIGTERM each, and SIGKILL the process group of any still running after ``timeout_s``.

    The gateway's graceful stop lets the callback being delivered finish:
    up to ``[callbacks] timeout_s`` and gunicorn's margin.
    """
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            children.kill_group(process.pid)
            process.wait()


def _trace_command(config_path):
    """``m2m-gateway trace`` as this demo was started, relative to its directory."""
    if Path(sys.argv[0]).name == "m2m-gateway":
        program = shlex.quote(sys.argv[0])
    else:
        program = f"{shlex.quote(sys.executable)} -m gateway"
    config_args = f" --config {shlex.quote(config_path)}" if config_path else ""
    return f'{program} trace "$REQUEST_ID"{config_args}'


def _wait_until_listening(host, port, processes):
    try:
        children.wait_for_port(port, processes, host)
    except children.NotListening as error:
        raise SystemExit(f"m2m-gateway demo: {error} (see the output above)") from None


def instructions(settings, listener_url, trace_command):
    """What the demo prints: URLs, curl commands that log in, register the listener, call GoToState,
    and ``trace_command``, which tells that request's story."""
    base = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    session_url, state_url = base + service_path("SessionService"), base + service_path("StateService")
    registration_url = base + service_path("CallbackRegistrationService")
    simulator = SimulatorSettings()
    username, password = next(iter(simulator.users.items()))
    log_in = _envelope(
        "",
        f'<LogIn xmlns="{ns.V2}"><Input xmlns:a="{ns.SESSION}">'
        f"<a:Username>{username}</a:Username><a:Password>{password}</a:Password></Input></LogIn>",
    )
    register = _envelope(
        f"<v2:token>'\"$TOKEN\"'</v2:token>",
        f'<v2:RegisterCallback><v2:Input xmlns:a="{ns.CALLBACK_REGISTRATION}">'
        f"<a:AccountName>{simulator.account_name}</a:AccountName><a:ServiceName>StateService</a:ServiceName>"
        f"<a:Url>{listener_url}</a:Url><a:Username>listener</a:Username><a:Password>listener-secret</a:Password>"
        "</v2:Input></v2:RegisterCallback>",
    )
    go_to_state = _envelope(
        f"<v2:token>'\"$TOKEN\"'</v2:token>",
        f'<v2:GoToState><v2:Input xmlns:nph="{ns.STATE}" xmlns:nph1="{ns.COMMON}"><nph:DeviceList>'
        + "".join(
            "<nph1:DeviceIdentifierCollection><nph1:DeviceIdentifiers>"
            f"<nph1:DeviceIdentifier><nph1:Kind>IMEI</nph1:Kind><nph1:Identifier>{imei}</nph1:Identifier></nph1:DeviceIdentifier>"
            f"<nph1:DeviceIdentifier><nph1:Kind>ICCID</nph1:Kind><nph1:Identifier>{iccid}</nph1:Identifier></nph1:DeviceIdentifier>"
            "</nph1:DeviceIdentifiers></nph1:DeviceIdentifierCollection>"
            for imei, iccid in (("990000862471854", "89148000000800784259"), ("990000862471855", "89148000000800784260"))
        )
        + "</nph:DeviceList><nph:ServiceName>fast1</nph:ServiceName><nph:StateName>new active</nph:StateName>"
        "<nph:ServicePlan>4G East</nph:ServicePlan><nph:MdnZipCode>94203</nph:MdnZipCode></v2:Input></v2:GoToState>",
    )
    return f"""
m2m-gateway is running (Ctrl-C stops it):
  SessionService        {session_url}   WSDL: {session_url}?wsdl
  StateService          {state_url}   WSDL: {state_url}?wsdl
  CallbackRegistration  {registration_url}
  ThingSpace simulator  {settings.upstream.base_url}
  demo legacy listener  {listener_url} (prints the SOAP callbacks it receives)

Log in, register the demo listener, then move two devices to a new state
(paste into a shell in this directory; the listener prints one callback per device):

TOKEN=$(curl -s {session_url} -H 'Content-Type: text/xml; charset=utf-8' \\
  -H 'SOAPAction: "{soap_action("SessionService", "LogIn")}"' \\
  --data '{log_in}' \\
  | sed -n 's|.*<a:SessionToken>\\([^<]*\\)</a:SessionToken>.*|\\1|p'); echo "SessionToken: $TOKEN"

curl -s {registration_url} -H 'Content-Type: text/xml; charset=utf-8' \\
  -H 'SOAPAction: "{soap_action("CallbackRegistrationService", "RegisterCallback")}"' \\
  --data '{register}'; echo

REQUEST_ID=$(curl -s {state_url} -H 'Content-Type: text/xml; charset=utf-8' \\
  -H 'SOAPAction: "{soap_action("StateService", "GoToState")}"' \\
  --data '{go_to_state}' \\
  | sed -n 's|.*<a:RequestId>\\([^<]*\\)</a:RequestId>.*|\\1|p'); echo "RequestId: $REQUEST_ID"

Then follow that request end to end: forwarded, called back, each delivery attempt:

{trace_command}
"""


def _envelope(header, body):
    return (
        f'<s:Envelope xmlns:s="{ns.SOAP_ENV}" xmlns:v2="{ns.V2}">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
