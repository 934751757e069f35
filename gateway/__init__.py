"""m2m-gateway: the legacy nPhase SOAP API in front of ThingSpace REST."""

# First, so that it precedes every Spyne import of the product (Spyne 2.14 on Python 3.12+).
from gateway import spyne_compat  # noqa: F401

__version__ = "0.1.0"
