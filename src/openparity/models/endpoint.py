"""Tiny stdlib probes of an HTTP endpoint (readiness waits, doctor); no client library needed."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from openparity.errors import OpenparityError


def probe(url: str, *, timeout_s: float = 3.0, api_key: str | None = None) -> str | None:
    """None when GET `url` answers 2xx; otherwise a short reason (refused, timeout, HTTP 401)."""
    request = urllib.request.Request(url, headers={"User-Agent": "openparity"})
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return str(getattr(exc.reason, "strerror", None) or exc.reason)
    except (TimeoutError, OSError) as exc:
        return type(exc).__name__ if not str(exc) else str(exc)


def http_ok(url: str, *, timeout_s: float = 3.0) -> bool:
    return probe(url, timeout_s=timeout_s) is None


def require_free_port(host: str, port: int) -> None:
    """Fail before starting a server on a taken port: otherwise whatever holds it would answer
    the readiness check and the new server would die unseen."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OpenparityError(
                f"cannot serve on {host}:{port} ({exc.strerror or exc})",
                hint="stop what holds that port or pick another with --port",
            ) from None
