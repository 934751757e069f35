"""Values quoted back in fault texts: the client hears them verbatim, so long ones are cut."""

LIMIT = 40


def shown(text):
    """``text`` quoted for a fault text, cut short when long."""
    if len(text) <= LIMIT:
        return repr(text)
    return f"{text[:LIMIT]!r}... ({len(text):,} characters)"
