"""Secrets out of what is shown: a URL's password (`http://user:pw@host` → `http://user:***@host`),
wherever a URL or a name holding one is printed, logged, stored or served."""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def redact_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _PASSWORD.sub(r"\1:***@", text)
