"""Text from Bottle's parsed query string and form body, whichever way Bottle parsed it.

Bottle hands URL-encoded values (the query string, ``application/x-www-form-
urlencoded`` bodies) as latin-1 stand-ins for their bytes, but multipart values
already decoded, and file parts as ``FileUpload`` objects. Handlers that
re-decoded every value as latin-1 crashed on a multipart value outside Latin-1
or on a file part; everything reads request text through here instead.
"""
from __future__ import annotations

import bottle


def utf8(value: str) -> str:
    """A latin-1 stand-in decoded as the UTF-8 it should be (or hostile bytes).

    Invalid UTF-8 becomes U+FFFD, which no hostname or address accepts: an
    undecodable ``hostname`` / ``myip`` is answered notfqdn / badip after
    authentication, and an undecodable unknown parameter is ignored.
    """
    return value.encode("latin-1").decode("utf-8", errors="replace")


def _text(source: bottle.FormsDict, value: object) -> str | None:
    if not isinstance(value, str):
        return None  # a file part where a field was expected: not a value
    return utf8(value) if source.recode_unicode else value


def all_values(source: bottle.FormsDict) -> dict[str, list[str]]:
    """Every key of SOURCE with its values as text, in order; file parts left out."""
    out: dict[str, list[str]] = {}
    for key in source.keys():
        texts = [t for t in (_text(source, v) for v in source.getall(key)) if t is not None]
        if texts:
            out.setdefault(utf8(key) if source.recode_unicode else key, []).extend(texts)
    return out


def value(source: bottle.FormsDict, name: str) -> str:
    """The last value of NAME in SOURCE as text ("" when absent or a file)."""
    texts = [t for t in (_text(source, v) for v in source.getall(name)) if t is not None]
    return texts[-1] if texts else ""
