"""Text that XML 1.0 can carry.

Most control characters cannot appear in XML 1.0 at all, not even as
character references; a value holding one (from ThingSpace, say) would make
lxml refuse to write the document, so it is dropped on the way out.
"""

import re

_NOT_XML_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text):
    """``text`` without the characters XML 1.0 cannot carry."""
    return _NOT_XML_CHARACTER.sub("", text)
