"""The pure, I/O-free translation core between the legacy SOAP contract and ThingSpace REST."""
