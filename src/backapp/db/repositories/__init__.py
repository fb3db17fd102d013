"""Every query BackApp makes, one module per table; services call these, never SQL."""


def storable(text: str) -> bool:
    """Given a string from outside (an id, a name), return whether a query may carry it.

    PostgreSQL refuses NUL characters in text even in a WHERE clause; no stored value
    holds one, so a lookup by such a string finds nothing.
    """
    return "\x00" not in text
