"""Text a database can store.

PostgreSQL's text and jsonb cannot hold U+0000, and a lone UTF-16 surrogate (what JSON's
"\\ud800" escape decodes to) has no UTF-8 form at all: the driver cannot even send it, and
SQLite's cannot either. The SCIM door refuses such text (400 invalidValue,
``scim/documents.py``); the request log, which must keep what it was sent, shows it as U+FFFD
(``scim/request_log.py``).
"""

import re

UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text(text: str) -> bool:
    """Whether ``text`` holds NUL or a lone surrogate."""
    return UNSTORABLE_RE.search(text) is not None


def storable_text(text: str) -> str:
    """``text`` with NUL and lone surrogates shown as U+FFFD."""
    if UNSTORABLE_RE.search(text) is None:
        return text
    return UNSTORABLE_RE.sub("\ufffd", text)
