"""Spyne 2.14 (its last release) on Python 3.12 and 3.13; nothing at all on 3.11.

Spyne vendors an old ``six`` (``spyne/util/six.py``) whose meta-path importer
for ``spyne.util.six.moves.*`` has only ``find_module``/``load_module``. Python
3.12 dropped that protocol, so Spyne's own ``from spyne.util.six.moves...``
imports fail (arskom/spyne #700, #708, #711). ``SixMovesFinder``, first in
``sys.meta_path``, answers those names with a spec whose loader asks the
vendored importer for the module. Its loader puts the importer's module in
``sys.modules`` in place of the one the import system created, so the standard
modules the moves stand for (``collections.abc``, ``urllib.parse``, ...) keep
their own ``__spec__``.

Spyne also imports ``cgi``, which warns of its removal on 3.11 and 3.12 (on 3.12
that warning, from Spyne only, is filtered below) and is gone from 3.13, where
the ``legacy-cgi`` package provides it (``setup.cfg``).

``gateway/__init__.py`` imports this module, so it runs before any Spyne import
of the product.
"""

import importlib.util
import sys
import warnings

SIX_MOVES = "spyne.util.six.moves"


def _vendored_six_importer():
    # Importing spyne.util.six.moves.x imports its parent spyne.util.six first.
    return sys.modules["spyne.util.six"]._importer


class SixMovesFinder:
    """Finder and loader of spyne.util.six.moves.* through the vendored six's importer."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname.startswith(SIX_MOVES) and _vendored_six_importer().find_module(fullname):
            return importlib.util.spec_from_loader(fullname, SixMovesFinder)
        return None

    @staticmethod
    def create_module(spec):
        return None  # the import system's placeholder, replaced by exec_module

    @staticmethod
    def exec_module(module):
        del sys.modules[module.__name__]
        _vendored_six_importer().load_module(module.__name__)


if sys.version_info >= (3, 12):
    sys.meta_path.insert(0, SixMovesFinder)
    warnings.filterwarnings(
        "ignore", message="'cgi' is deprecated", category=DeprecationWarning, module=r"spyne\."
    )
