"""The operator documentation in README.md, checked against the code it describes."""

import configparser
import re

from gateway import cli, config, metrics
from gateway.soap import faults
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_configuration_table_has_every_key_with_its_shipped_default():
    rows = re.findall(r"^\| `\[(\w+)\] (\w+)` \| (`[^`]*`|empty) \|", README, re.M)
    documented = {(section, key): default.strip("`") if default != "empty" else "" for section, key, default in rows}
    assert set(documented) == set(config.SCHEMA)
    shipped = configparser.ConfigParser(interpolation=None)
    shipped.read(ROOT / "conf" / "gateway.ini")
    assert documented == {(section, key): shipped.get(section, key, fallback="") for section, key in config.SCHEMA}


def test_the_troubleshooting_table_has_every_faultcode_the_gateway_writes():
    table = README[README.index("#### Troubleshooting"):]
    codes = {cls.code for cls in vars(faults).values() if isinstance(cls, type) and issubclass(cls, faults.GatewayFault)}
    codes |= faults.SESSION_EXPIRED_CODES
    for code in codes:
        stem = code.rpartition(".")[0] if code in faults.SESSION_EXPIRED_CODES else code
        assert f"`{stem}" in table, f"{code} is not in the troubleshooting table"


def test_the_metrics_table_has_every_metric():
    names = {family.name for collector in metrics.PROCESS_METRICS for family in collector.describe()}
    names |= {"m2mgw_outbox_callbacks", "m2mgw_outbox_oldest_pending_seconds"}
    table = README[README.index("### Metrics"):]
    for name in names:
        assert re.search(rf"`{name}(_total)?[{{`]", table), f"{name} is not in the metrics table"


def test_the_commands_table_has_every_command_and_action():
    table = README[README.index("## Commands"):README.index("## Configuration")]
    documented = set(re.findall(r"^\| `m2m-gateway ([a-z-]+(?: [a-z-]+)?)", table, re.M))
    commands = _subcommands(cli._parser())
    expected = set()
    for name, parser in commands.items():
        actions = _subcommands(parser)
        expected |= {f"{name} {action}" for action in actions} if actions else {name}
    documented |= {f"callbacks {also}" for also in re.findall(r"` / `(\w+)`", table)}  # "pending` / `dead"
    assert expected <= documented, f"not in the commands table: {sorted(expected - documented)}"


def _subcommands(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}
