"""The gateway on the running interpreter (3.11, 3.12 or 3.13): gateway/spyne_compat.py.

Each test imports the gateway in a fresh interpreter, the one running the suite,
since what the compatibility module does happens once, at the gateway's import.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.process

# Imports the gateway, reports what that import added to the import system and
# the warning filters, then imports every module of the gateway (Spyne with them)
# and Spyne's six.moves names.
PROBE = r"""
import collections.abc, http.cookies, importlib, json, pkgutil, sys, urllib.parse, warnings

STANDARD = (collections.abc, http.cookies, urllib.parse)
meta_path, filters = list(sys.meta_path), list(warnings.filters)
specs = [m.__spec__ for m in STANDARD]
import gateway
report = {
    "finders_added": [getattr(f, "__name__", repr(f)) for f in sys.meta_path if f not in meta_path],
    "first_finder": getattr(sys.meta_path[0], "__name__", repr(sys.meta_path[0])),
    "filters_added": [
        [f[0], f[1] and f[1].pattern, f[2].__name__, f[3] and f[3].pattern] for f in warnings.filters if f not in filters
    ],
}
for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
from spyne.util.six.moves.collections_abc import MutableSet
from spyne.util.six.moves.http_cookies import SimpleCookie
from spyne.util.six.moves.urllib.parse import quote
report["moves"] = [MutableSet is collections.abc.MutableSet, SimpleCookie is http.cookies.SimpleCookie, quote is urllib.parse.quote]
report["standard_specs_kept"] = [m.__spec__ is spec for m, spec in zip(STANDARD, specs)]
print(json.dumps(report))
"""

# Spyne's `import cgi`: deprecated from 3.11; the compatibility module filters it on 3.12.
SPYNE_CGI_WARNING = ["ignore", "'cgi' is deprecated", "DeprecationWarning", r"spyne\."]


def probe(*warning_options):
    """The PROBE's report, run with DeprecationWarnings as errors (and ``warning_options`` after)."""
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", *warning_options, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the compatibility module acts on Python 3.12+")
def test_on_3_11_the_compatibility_module_does_nothing_and_spyne_imports_as_it_is():
    # 3.11 warns of Spyne's `import cgi` (from whichever Spyne module imports cgi first); nothing else may warn.
    report = probe("-W", "ignore:'cgi' is deprecated:DeprecationWarning")
    assert report["finders_added"] == []
    assert report["filters_added"] == []
    assert report["moves"] == [True, True, True]
    assert report["standard_specs_kept"] == [True, True, True]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.11 needs no compatibility module")
def test_on_3_12_and_later_spyne_imports_through_the_compatibility_module_without_a_deprecation_warning():
    report = probe()
    assert report["finders_added"] == ["SixMovesFinder"]
    assert report["first_finder"] == "SixMovesFinder"
    assert report["filters_added"] == [SPYNE_CGI_WARNING]
    assert report["moves"] == [True, True, True]
    # The standard modules the moves stand for keep their own spec.
    assert report["standard_specs_kept"] == [True, True, True]
