"""``make run``: the simulator and the gateway as two processes, and how to call them."""

import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from gateway import ns
from gateway.app import service_path
from gateway.exceptions import ConfigError
from gateway.simulator import SimulatorSettings
from gateway.soap.conventions import soap_action

STARTUP_TIMEOUT_S = 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run(settings, config_path=None, listener_port=8082):
    upstream = urlsplit(settings.upstream.base_url)
    if upstream.hostname not in LOOPBACK or upstream.port is None:
        raise ConfigError("upstream", "base_url", "the demo runs the simulator there: it must be http://127.0.0.1:PORT")
    config_args = ["--config", config_path] if config_path else []
    simulator_args = ["simulator", "--host", upstream.hostname, "--port", str(upstream.port)]
    listener_args = ["demo-listener", "--port", str(listener_port)]
    processes = [
        subprocess.Popen([sys.executable, "-m", "gateway", *arguments])
        for arguments in (simulator_args, listener_args, ["serve", *config_args])
    ]
    # SIGTERM ends the demo like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _wait_until_listening(upstream.hostname, upstream.port, processes)
        _wait_until_listening("127.0.0.1", listener_port, processes)
        _wait_until_listening(settings.server.host, settings.server.port, processes)
        print(instructions(settings, f"http://127.0.0.1:{listener_port}/"), flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.2)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _wait_until_listening(host, port, processes):
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise SystemExit("m2m-gateway demo: a process exited during start-up (see its output above)")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"m2m-gateway demo: nothing listens on {host}:{port} after {STARTUP_TIMEOUT_S} s")


def instructions(settings, listener_url):
    """What the demo prints: URLs, and curl commands that log in, register the listener, call GoToState."""
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
(paste into a shell; the listener prints one callback per device):

TOKEN=$(curl -s {session_url} -H 'Content-Type: text/xml; charset=utf-8' \\
  -H 'SOAPAction: "{soap_action("SessionService", "LogIn")}"' \\
  --data '{log_in}' \\
  | sed -n 's|.*<a:SessionToken>\\([^<]*\\)</a:SessionToken>.*|\\1|p'); echo "SessionToken: $TOKEN"

curl -s {registration_url} -H 'Content-Type: text/xml; charset=utf-8' \\
  -H 'SOAPAction: "{soap_action("CallbackRegistrationService", "RegisterCallback")}"' \\
  --data '{register}'; echo

curl -s {state_url} -H 'Content-Type: text/xml; charset=utf-8' \\
  -H 'SOAPAction: "{soap_action("StateService", "GoToState")}"' \\
  --data '{go_to_state}'; echo
"""


def _envelope(header, body):
    return (
        f'<s:Envelope xmlns:s="{ns.SOAP_ENV}" xmlns:v2="{ns.V2}">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
