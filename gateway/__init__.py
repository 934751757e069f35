"""m2m-gateway: the legacy nPhase SOAP API in front of ThingSpace REST."""

__version__ = "0.1.0"
