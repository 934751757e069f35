#!/usr/bin/env python3
"""The toolkit matrix: every SOAP toolkit imports our WSDLs and calls LogIn
and GoToState (and meets two faults) through a real gateway and simulator.

    interop/run.py                        # every toolkit, ?wsdl and ?singleWsdl
    interop/run.py --only php,gsoap       # some of them
    interop/run.py --wsdl singleWsdl      # one form of the WSDL only
    interop/run.py --partial              # install nothing; skip what is missing

It installs what a toolkit lacks (Debian packages when its tool is absent,
npm packages into interop/node_modules), starts the simulator and the gateway
on free ports of 127.0.0.1, runs each toolkit's client (interop/clients/NAME)
in a temp work dir, and checks the result with the simulator's record of what
it received. A toolkit that is missing or does not run is a failure, unless
--partial; a run that is not the whole matrix says so in its last line. Exit
status 1 if any row failed. See interop/README.md.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if __name__ == "__main__" and VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    # Run as interop/run.py: the gateway, zeep and suds live in the project's venv.
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])

from gateway import processes  # noqa: E402  (the venv's, once in it)

CLIENTS = HERE / "clients"
NODE_MODULES = HERE / "node_modules"
STARTUP_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 240
WSDL_FORMS = ("wsdl", "singleWsdl")

LOGIN_PATH = "/api/m2m/v1/session/login"
GO_TO_STATE_PATH = "/api/m2m/v1/devices/actions/goToState"
# Injected before each client runs: its first goToState meets an expired session.
EXPIRED_SESSION_FAULT = "expired-session"
EXPIRED_CODE = "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"
EXPIRED_TEXT = "The session has expired."
# The client's GoToState breaking a legacy rule (SkuNumber of 21 characters).
CLIENT_FAULT_CODE = "Client"
CLIENT_FAULT_TEXT = "SkuNumber: must be at most 20 characters, got 21"
# What every client's GoToState must reach ThingSpace as: two devices, an IMEI
# and an ICCID each, ServiceName, StateName, ServicePlan and MdnZipCode.
EXPECTED_GO_TO_STATE = {
    "devices": [
        {"deviceIds": [{"kind": "imei", "id": "990000862471854"}, {"kind": "iccid", "id": "89148000000800784259"}]},
        {"deviceIds": [{"kind": "imei", "id": "990000862471855"}, {"kind": "iccid", "id": "89148000000800784260"}]},
    ],
    "serviceName": "fast1",
    "stateName": "new active",
    "servicePlan": "4G East",
    "mdnZipCode": "94203",
}


@dataclass
class Toolkit:
    name: str
    command: list  # run in the work dir, followed by the two WSDL URLs
    # Each (what, check): check is a command that succeeds when the tool is there.
    requires: list
    apt: list = field(default_factory=list)
    npm: bool = False


def _bash(script):
    return ["bash", str(CLIENTS / script)]


def _has(executable):
    return ["sh", "-c", f"command -v {executable}"]


def _exists(path):
    return ["test", "-e", path]


TOOLKITS = [
    Toolkit(
        "php",
        ["php", str(CLIENTS / "php" / "client.php")],
        [("php", _has("php")), ("ext/soap", ["php", "-r", "exit(class_exists('SoapClient') ? 0 : 1);"])],
        apt=["php-cli", "php-soap"],
    ),
    Toolkit(
        "gsoap",
        _bash("gsoap/run.sh"),
        [
            ("wsdl2h", _has("wsdl2h")),
            ("soapcpp2", _has("soapcpp2")),
            ("stdsoap2.h", _exists("/usr/include/stdsoap2.h")),
            ("g++", _has("g++")),
        ],
        apt=["gsoap", "libgsoap-dev", "g++"],
    ),
    Toolkit(
        "jaxws",
        _bash("jaxws/run.sh"),
        [("wsimport", _has("wsimport")), ("javac", _has("javac"))],
        apt=["jaxws", "default-jdk-headless"],
    ),
    Toolkit(
        "axis1",
        _bash("axis1/run.sh"),
        [("axis.jar", _exists("/usr/share/java/axis.jar")), ("javac", _has("javac"))],
        apt=["libaxis-java", "default-jdk-headless"],
    ),
    Toolkit(
        "mono-wsdl",
        _bash("mono-wsdl/run.sh"),
        [("wsdl", _has("wsdl")), ("mcs", _has("mcs")), ("mono", _has("mono"))],
        apt=["mono-devel"],
    ),
    Toolkit(
        "mono-svcutil",
        _bash("mono-svcutil/run.sh"),
        [("svcutil", _has("svcutil")), ("mcs", _has("mcs")), ("mono", _has("mono"))],
        apt=["mono-devel"],
    ),
    Toolkit(
        "perl",
        _bash("perl/run.sh"),
        [("wsdl2perl", _has("wsdl2perl"))],
        apt=["libsoap-wsdl-perl"],
    ),
    Toolkit(
        "ruby",
        ["ruby", str(CLIENTS / "ruby" / "client.rb")],
        [
            ("soap4r", ["ruby", "-e", "require 'soap/wsdlDriver'"]),
            # soap4r's REXML parser fails on Debian 12's REXML 3.3; it takes
            # expat's (ruby-xmlparser) first when it is there.
            ("xmlparser", ["ruby", "-e", "require 'xmlparser'"]),
        ],
        apt=["ruby-soap4r", "ruby-xmlparser"],
    ),
    Toolkit(
        "node-soap",
        ["node", str(CLIENTS / "node-soap" / "client.js")],
        [("node", _has("node")), ("soap", _exists(str(NODE_MODULES / "soap" / "package.json")))],
        npm=True,
    ),
    Toolkit(
        "strong-soap",
        ["node", str(CLIENTS / "strong-soap" / "client.js")],
        [("node", _has("node")), ("strong-soap", _exists(str(NODE_MODULES / "strong-soap" / "package.json")))],
        npm=True,
    ),
    Toolkit(
        "zeep",
        [sys.executable, str(CLIENTS / "zeep" / "client.py")],
        [("zeep", [sys.executable, "-c", "import zeep"])],
    ),
    Toolkit(
        "suds",
        [sys.executable, str(CLIENTS / "suds" / "client.py")],
        [("suds", [sys.executable, "-c", "import suds.client"])],
    ),
]


CHECKS = ("imported", "login", "go_to_state", "expired", "client_fault")


@dataclass
class Row:
    toolkit: str
    form: str
    imported: str = "-"
    login: str = "-"
    go_to_state: str = "-"
    expired: str = "-"
    client_fault: str = "-"
    seconds: float = 0.0
    notes: list = field(default_factory=list)
    log: str = ""

    @property
    def results(self):
        return [getattr(self, check) for check in CHECKS]

    @property
    def failed(self):
        return "FAIL" in self.results

    @property
    def skipped(self):
        return self.imported == "skip"

    @classmethod
    def skip(cls, toolkit, form, why):
        return cls(toolkit, form, **{check: "skip" for check in CHECKS}, notes=[why])


# -- installing --------------------------------------------------------------


def _succeeds(command):
    try:
        return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing(toolkit):
    return [what for what, check in toolkit.requires if not _succeeds(check)]


def install(toolkits, log):
    """Installs what the toolkits lack; returns {name: reason} for those still lacking something."""
    apt = sorted({package for toolkit in toolkits if missing(toolkit) for package in toolkit.apt})
    if apt:
        if os.geteuid() != 0:
            print(f"interop: not root, cannot apt-get install {' '.join(apt)}", file=sys.stderr)
        else:
            print(f"interop: apt-get install {' '.join(apt)}", flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            with open(log, "ab") as out:
                subprocess.run(["apt-get", "update", "-q"], stdout=out, stderr=subprocess.STDOUT, env=env)

                def apt_install(packages):
                    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
                    return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode == 0

                if not apt_install(apt):
                    # One broken package must not cost the other toolkits theirs.
                    for toolkit in toolkits:
                        if toolkit.apt and missing(toolkit):
                            apt_install(toolkit.apt)
    if any(toolkit.npm and missing(toolkit) for toolkit in toolkits) and shutil.which("npm"):
        print("interop: npm install (interop/package.json)", flush=True)
        with open(log, "ab") as out:
            subprocess.run(
                ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(HERE)],
                stdout=out, stderr=subprocess.STDOUT, cwd=HERE,
            )
    reasons = {}
    for toolkit in toolkits:
        lacking = missing(toolkit)
        if lacking:
            if toolkit.apt:
                how = f"apt-get install {' '.join(toolkit.apt)}"
            elif toolkit.npm:
                how = "npm install --prefix interop"
            else:
                how = "make's venv: pip install -e '.[test]'"
            reasons[toolkit.name] = f"{', '.join(lacking)} missing ({how})"
    if reasons and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-30:]
        print("interop: the end of the install log:", *tail, sep="\n  ", flush=True)
    return reasons


# -- the gateway and the simulator -----------------------------------------


class Process:
    """A ``python -m gateway`` child in its own process group, stopped by its PID."""

    def __init__(self, name, args, port, env, log_path):
        self.name, self.port, self.log_path = name, port, log_path
        self.popen = processes.start(args, env, log_path)
        self.url = f"http://127.0.0.1:{port}"

    def wait_until_listening(self):
        try:
            processes.wait_for_port(self.port, [self.popen], timeout_s=STARTUP_TIMEOUT_S)
        except processes.NotListening as error:
            raise RuntimeError(f"{self.name}: {error} (log: {self.log_path})") from None

    def stop(self):
        processes.stop(self.popen)
        # Its workers (the group we started, named by the PID that leads it).
        processes.kill_group(self.popen.pid)


def _environment(extra):
    env = {name: value for name, value in os.environ.items() if not name.startswith("M2MGW_")}
    return {**env, **extra}


def start_services(run_dir):
    simulator_port = processes.free_port()
    simulator = Process(
        "simulator", ["simulator", "--port", str(simulator_port)], simulator_port,
        _environment({}), run_dir / "simulator.log",
    )
    started = [simulator]
    try:
        simulator.wait_until_listening()
        gateway_port = processes.free_port()
        gateway = Process(
            "gateway", ["serve"], gateway_port,
            _environment({
                "M2MGW_SERVER_HOST": "127.0.0.1",
                "M2MGW_SERVER_PORT": str(gateway_port),
                "M2MGW_UPSTREAM_BASE_URL": simulator.url,
                "M2MGW_STORE_PATH": str(run_dir / "gateway.sqlite3"),
            }),
            run_dir / "gateway.log",
        )
        started.append(gateway)
        gateway.wait_until_listening()
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return simulator, gateway


def _http(method, url, document=None, timeout=10):
    """The body of the answer to ``method url``, with ``document`` as its JSON body if given."""
    body = json.dumps(document).encode() if document is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, method=method, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.read()


def simulator_records(simulator):
    return json.loads(_http("GET", simulator.url + "/_simulator/requests"))


# -- one toolkit -----------------------------------------------------------


def _lines(output, key):
    """The values of the client's ``KEY value`` lines."""
    return [line[len(key):].strip() for line in output.splitlines() if line.startswith(key + " ")]


def run_toolkit(toolkit, form, gateway, simulator, work_root, timeout_s):
    row = Row(toolkit.name, f"?{form}")
    work = Path(tempfile.mkdtemp(prefix=f"{toolkit.name}-{form}-", dir=work_root))
    urls = [f"{gateway.url}/api/v2/{service}.svc?{form}" for service in ("SessionService", "StateService")]
    _http("POST", simulator.url + "/_simulator/reset")
    _http("POST", simulator.url + "/_simulator/faults", {"path": GO_TO_STATE_PATH, "fault": EXPIRED_SESSION_FAULT})
    log_path = work / "client.log"
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    timed_out = False
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*toolkit.command, *urls], cwd=work, env=env,
            stdout=subprocess.PIPE, stderr=log, start_new_session=True,
        )
        try:
            stdout, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            processes.kill_group(process.pid)
            stdout, _ = process.communicate()
        finally:
            # Whatever the client left running (a JVM, a compiler), or all of
            # it when this run is interrupted: the group we started, by its PID.
            processes.kill_group(process.pid)
    row.seconds = time.monotonic() - started
    output = stdout.decode("utf-8", "replace")
    row.log = f"--- stdout\n{output}--- stderr ({log_path})\n{log_path.read_text(errors='replace')}"
    _judge(row, output, simulator_records(simulator))
    if process.returncode != 0 and not row.failed:
        row.go_to_state = "FAIL"  # everything checked out, but the client did not end well
    if timed_out:
        row.notes.append(f"timed out after {timeout_s:.0f} s")
    elif process.returncode != 0:
        said = _last_words(log_path.read_text(errors="replace"))
        row.notes.append(f"client exited with {process.returncode}" + (f": {said}" if said else ""))
    return row


def _last_words(text, limit=240):
    """The client's last line of complaint, shortened, for the table's notes."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("at ")]
    for line in reversed(lines):
        if any(word in line.lower() for word in ("error", "exception", "fault", "fail", "cannot")):
            return line[:limit]
    return lines[-1][:limit] if lines else ""


def _fault(output, key):
    """``(faultcode's local name, faultstring)`` from the client's last ``KEY faultcode faultstring`` line."""
    lines = _lines(output, key)
    if not lines:
        return None
    code, _, text = lines[-1].partition(" ")
    # A QName however the toolkit shows it: prefix:local, {namespace}local or local.
    return code.rpartition("}")[2].rpartition(":")[2], text.strip()


def _judge(row, output, records):
    """Each column from what the client printed and what ThingSpace received.

    The client calls GoToState three times: the first meets the expired session
    injected before it ran, the second breaks a legacy rule (the gateway refuses
    it; nothing goes upstream), the third goes through.
    """
    tokens, request_ids = _lines(output, "SESSION"), _lines(output, "REQUEST")
    row.imported = "ok" if ("IMPORTED" in output.split() or tokens) else "FAIL"
    if row.imported != "ok":
        return
    logins = [r for r in records if r["path"] == LOGIN_PATH and r.get("status") == 200]
    issued = {(r.get("response") or {}).get("sessionToken") for r in logins}
    if not tokens or tokens[-1] not in issued:
        row.login = "FAIL"
        row.notes.append("no SESSION line" if not tokens else "SESSION is not the token ThingSpace issued")
        return
    row.login = "ok"
    token = tokens[-1]
    calls = [r for r in records if r["path"] == GO_TO_STATE_PATH]
    faulted = [r for r in calls if r.get("fault") == EXPIRED_SESSION_FAULT]
    through = [r for r in calls if "fault" not in r]
    row.expired = _judge_fault(
        row, "expired session", _fault(output, "EXPIRED_FAULT"), (EXPIRED_CODE, EXPIRED_TEXT),
        "ThingSpace received no goToState for it" if not faulted else None,
    )
    row.client_fault = _judge_fault(
        row, "client fault", _fault(output, "CLIENT_FAULT"), (CLIENT_FAULT_CODE, CLIENT_FAULT_TEXT),
        f"ThingSpace received {len(calls)} goToState calls, expected 2" if len(calls) > 2 else None,
    )
    row.go_to_state = "FAIL"
    if len(through) != 1:
        row.notes.append(f"ThingSpace received {len(through)} goToState calls without a fault, expected 1")
    elif through[0]["json"] != EXPECTED_GO_TO_STATE:
        row.notes.append(f"ThingSpace received {json.dumps(through[0]['json'])}")
    elif through[0]["headers"].get("VZ-M2M-Token") != token:
        row.notes.append("goToState did not carry LogIn's session token")
    elif through[0].get("status") != 200:
        row.notes.append(f"ThingSpace answered {through[0].get('status')}")
    elif not request_ids or request_ids[-1] != (through[0].get("response") or {}).get("requestId"):
        row.notes.append("no REQUEST line" if not request_ids else "REQUEST is not the requestId ThingSpace answered")
    else:
        row.go_to_state = "ok"


def _judge_fault(row, what, printed, expected, upstream_problem):
    """``ok`` when the client's fault API gave the expected faultcode and faultstring."""
    if printed is None:
        row.notes.append(f"{what}: the client printed no fault")
    elif printed != expected:
        row.notes.append(f"{what}: the client read {printed!r}, expected {expected!r}")
    elif upstream_problem:
        row.notes.append(f"{what}: {upstream_problem}")
    else:
        return "ok"
    return "FAIL"


# -- the table -------------------------------------------------------------

COLUMNS = ("toolkit", "WSDL import", "LogIn", "GoToState", "expired session", "client fault", "seconds")


def print_table(rows):
    cells = [COLUMNS] + [(f"{row.toolkit} {row.form}", *row.results, f"{row.seconds:.1f}") for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    for n, line in enumerate(cells):
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if n == 0:
            print("-|-".join("-" * width for width in widths))
    for row in rows:
        if row.notes:
            print(f"  {row.toolkit} {row.form}: {'; '.join(row.notes)}")


def summary(rows, partial):
    """The last line: the counts, and whether this was less than the whole matrix."""
    failed = sum(row.failed for row in rows)
    passed = sum(1 for row in rows if not row.failed and not row.skipped)
    line = f"interop: {passed} passed, {failed} failed"
    skipped = sorted({row.toolkit for row in rows if row.skipped})
    if skipped:
        partial = [*partial, f"skipped {', '.join(skipped)}"]
    if partial:
        line += f"; PARTIAL RUN, not the whole matrix ({'; '.join(partial)})"
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated toolkits: " + ", ".join(t.name for t in TOOLKITS))
    parser.add_argument("--wsdl", choices=[*WSDL_FORMS, "both"], default="both", help="the WSDL form(s) to import")
    parser.add_argument("--timeout", type=float, default=CLIENT_TIMEOUT_S, help="seconds per toolkit and form")
    parser.add_argument(
        "--partial", action="store_true",
        help="install nothing and skip the toolkits that are missing (else each is a failure)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (generated code, logs)")
    args = parser.parse_args(argv)

    toolkits = TOOLKITS
    partial = []  # how this run is less than the whole matrix
    if args.only:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(names) - {t.name for t in TOOLKITS})
        if unknown:
            parser.error(f"unknown toolkit(s): {', '.join(unknown)}")
        toolkits = [t for t in TOOLKITS if t.name in names]
        partial.append(f"--only {','.join(t.name for t in toolkits)}")
    forms = WSDL_FORMS if args.wsdl == "both" else (args.wsdl,)
    if args.wsdl != "both":
        partial.append(f"--wsdl {args.wsdl}")

    run_dir = Path(tempfile.mkdtemp(prefix="m2m-interop-"))
    # SIGTERM (CI's timeout, kill) ends the run through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    simulator = gateway = None
    rows = []
    try:
        if args.partial:
            unavailable = {t.name: f"{', '.join(m)} missing" for t in toolkits if (m := missing(t))}
        else:
            unavailable = install(toolkits, run_dir / "install.log")
        simulator, gateway = start_services(run_dir)
        print(f"interop: gateway {gateway.url}, simulator {simulator.url}, work dir {run_dir}", flush=True)
        for toolkit in toolkits:
            for form in forms:
                if toolkit.name in unavailable:
                    if args.partial:
                        rows.append(Row.skip(toolkit.name, f"?{form}", unavailable[toolkit.name]))
                    else:
                        rows.append(Row(toolkit.name, f"?{form}", imported="FAIL", notes=[unavailable[toolkit.name]]))
                    continue
                row = run_toolkit(toolkit, form, gateway, simulator, run_dir, args.timeout)
                rows.append(row)
                print(f"interop: {toolkit.name} ?{form}: {'/'.join(row.results)} in {row.seconds:.1f} s", flush=True)
                if row.failed:
                    print(row.log[-6000:], flush=True)
    finally:
        for process in (gateway, simulator):
            if process is not None:
                process.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print()
    print_table(rows)
    failed = any(row.failed for row in rows)
    if failed and not args.keep:
        print("interop: --keep keeps the generated code and logs of a run")
    print(f"\n{summary(rows, partial)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
