"""GoToState's DeviceList, the one collection that runs to thousands of items, read in one pass.

The strict reader (deserializer.py) makes a record of each device and
identifier, and the translation core then walks those records to build the
REST devices: for 10,000 devices, twice the time of reading the elements
straight into the REST devices, which is what this does for a DeviceList in
the shape generated clients send:

- every element where the contract puts it, in its namespace, once:
  DeviceIdentifierCollection > DeviceIdentifiers > DeviceIdentifier > Kind, Identifier;
- at most MAX_DEVICES devices, each with at least one identifier;
- no text between elements but white space; no element inside Kind or Identifier;
- each Kind spelled as the legacy document spells it (IMEI, ICCID, ...), each
  Identifier present and not empty, neither longer than MAX_TEXT.

Anything else, it leaves to the strict reader and the translation core
(``None``), which accept or refuse it as they always did, with the same
words: for a DeviceList this reads, both would have produced these very
devices without a word.
"""

from gateway import ns
from gateway.soap.deserializer import MAX_TEXT
from gateway.translate.gotostate import MAX_DEVICES, REST_KIND_OF_LEGACY_KIND, Devices

_COLLECTION = f"{{{ns.COMMON}}}DeviceIdentifierCollection"
_IDENTIFIERS = f"{{{ns.COMMON}}}DeviceIdentifiers"
_IDENTIFIER = f"{{{ns.COMMON}}}DeviceIdentifier"
_KIND = f"{{{ns.COMMON}}}Kind"
_VALUE = f"{{{ns.COMMON}}}Identifier"


def read(device_list):
    """The REST devices (``gotostate.Devices``) of a ``DeviceList`` element, or None to read it the strict way."""
    if not 0 < len(device_list) <= MAX_DEVICES or not _blank(device_list.text):
        return None
    devices = Devices()
    for collection in device_list:
        if collection.tag != _COLLECTION or len(collection) != 1:
            return None
        (identifiers,) = collection
        if identifiers.tag != _IDENTIFIERS or not len(identifiers):
            return None
        # Generated clients send no text at all between elements: one cheap test, then the full one.
        if (collection.text or collection.tail or identifiers.text or identifiers.tail) and not _blank(
            collection.text, collection.tail, identifiers.text, identifiers.tail
        ):
            return None
        device_ids = []
        for identifier in identifiers:
            if identifier.tag != _IDENTIFIER or len(identifier) != 2:
                return None
            kind, value = identifier
            if kind.tag != _KIND or value.tag != _VALUE or len(kind) or len(value):
                return None
            rest_kind = REST_KIND_OF_LEGACY_KIND.get(kind.text)
            text = value.text
            if rest_kind is None or not text or len(text) > MAX_TEXT:
                return None
            if (identifier.text or kind.tail or value.tail or identifier.tail) and not _blank(
                identifier.text, kind.tail, value.tail, identifier.tail
            ):
                return None
            device_ids.append({"kind": rest_kind, "id": text})
        devices.append({"deviceIds": device_ids})
    return devices


def _blank(*texts):
    """Whether each of ``texts`` is None or white space, as the strict reader judges it."""
    return all(text is None or text.isspace() for text in texts)
