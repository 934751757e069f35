"""The callback bridge: ThingSpace's JSON callbacks in, legacy SOAP callbacks out."""
