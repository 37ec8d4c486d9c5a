"""The HTTP transport seam: one POST per call, bounded end to end (connect + send + the whole answer) by a deadline.

A collector that trickles its answer a byte at a time, or never answers, cannot hold a request past its
deadline: every socket operation gets only the time that remains, and the answer is read by FluxLoop itself, so no
library's per-read timeout restarts with each byte. :class:`SocketTransport` speaks plain HTTP/1.1 (and HTTPS via
``ssl``) over a kept-alive connection per thread. Tests pass a scripted transport with the same ``post`` method.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = ["HttpResponse", "SessionTransport", "SocketTransport", "Transport", "TransportError"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024  # an OTLP answer is small; more is read and discarded up to this, then the connection closed


class TransportError(Exception):
    """The request did not get a complete answer (refused, reset, timed out, malformed); ``reason`` says which."""

    def __init__(self, reason: str, *, refused: bool = False, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused
        self.timed_out = timed_out


@dataclass(frozen=True)
class HttpResponse:
    """A complete HTTP answer."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


class Transport(Protocol):
    """Posts one body and returns the whole answer, or raises :class:`TransportError`, by ``deadline``."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> HttpResponse: ...

    def close(self) -> None: ...


class SocketTransport:
    """HTTP/1.1 POSTs over a kept-alive socket per thread; ``deadline`` is a ``time.monotonic()`` value.

    :meth:`abort` closes every open connection, which makes a request in flight on another thread fail at once
    (used by shutdown when its budget runs out).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def post(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> HttpResponse:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (parts.scheme, host, port)
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}",
                f"Content-Length: {len(body)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        reused = getattr(self._local, "key", None) == key and getattr(self._local, "sock", None) is not None
        sock = self._local.sock if reused else self._connect(key, secure, deadline)
        try:
            try:
                _send_all(sock, payload, deadline)
                response, keep = _read_response(sock, deadline)
            except TransportError as error:
                if not reused or error.timed_out:
                    raise
                # A kept-alive connection the server closed meanwhile: one fresh attempt.
                self._drop(sock)
                sock = self._connect(key, secure, deadline)
                _send_all(sock, payload, deadline)
                response, keep = _read_response(sock, deadline)
        except BaseException:
            self._drop(sock)
            raise
        if keep:
            self._local.key, self._local.sock = key, sock
        else:
            self._drop(sock)
        return response

    def abort(self) -> None:
        """Close all open connections (requests in flight fail with a TransportError)."""
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.abort()

    def _connect(self, key: tuple[str, str, int], secure: bool, deadline: float) -> socket.socket:
        _, host, port = key
        remaining = _remaining(deadline)
        try:
            sock = socket.create_connection((host, port), timeout=remaining)
        except TimeoutError:
            raise TransportError("connect timed out", timed_out=True) from None
        except OSError as error:
            raise TransportError(error.strerror or str(error) or type(error).__name__,
                                 refused=isinstance(error, ConnectionRefusedError)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if secure:
                context = self._ssl_context or ssl.create_default_context()
                sock.settimeout(_remaining(deadline))
                sock = context.wrap_socket(sock, server_hostname=host)
        except (OSError, TransportError) as error:
            with contextlib.suppress(OSError):
                sock.close()
            if isinstance(error, TransportError):
                raise
            raise TransportError(f"TLS: {error}", timed_out=isinstance(error, TimeoutError)) from None
        with self._lock:
            self._open.add(sock)
        self._local.key, self._local.sock = None, None
        return sock

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        if getattr(self._local, "sock", None) is sock:
            self._local.key, self._local.sock = None, None
        with contextlib.suppress(OSError):
            sock.close()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TransportError("timed out", timed_out=True)
    return remaining


def _send_all(sock: socket.socket, payload: bytes, deadline: float) -> None:
    view = memoryview(payload)
    try:
        while view:
            sock.settimeout(_remaining(deadline))
            sent = sock.send(view)
            view = view[sent:]
    except TimeoutError:
        raise TransportError("timed out sending the request", timed_out=True) from None
    except OSError as error:
        raise TransportError(error.strerror or str(error) or "send failed") from None


class _Reader:
    """Reads from a socket, each recv bounded by what remains of the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = bytearray()

    def fill(self) -> None:
        try:
            self.sock.settimeout(_remaining(self.deadline))
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TransportError("timed out waiting for the answer", timed_out=True) from None
        except OSError as error:
            raise TransportError(error.strerror or str(error) or "receive failed") from None
        if not chunk:
            raise TransportError("connection closed before a complete answer")
        self.buffer += chunk

    def until(self, marker: bytes, limit: int) -> bytes:
        while (index := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise TransportError("malformed answer (header too long)")
            self.fill()
        data = bytes(self.buffer[:index])
        del self.buffer[:index + len(marker)]
        return data

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def _read_response(sock: socket.socket, deadline: float) -> tuple[HttpResponse, bool]:
    reader = _Reader(sock, deadline)
    while True:
        head = reader.until(b"\r\n\r\n", _MAX_HEAD).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        pieces = status_line.split(" ", 2)
        if len(pieces) < 2 or not pieces[0].startswith("HTTP/") or not pieces[1].isdigit():
            raise TransportError("malformed answer (status line)")
        status = int(pieces[1])
        if status >= 200 or status == 101:
            break  # 1xx interim answers (100 Continue) are skipped
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = headers.get("connection", "").lower() != "close" and pieces[0] != "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = reader.until(b"\r\n", 1024).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise TransportError("malformed answer (chunk size)") from None
            if size == 0:
                reader.until(b"\r\n", _MAX_HEAD)  # trailers end with an empty line
                break
            chunk = reader.exactly(size + 2)[:-2]
            if len(body) < _MAX_BODY:
                body += chunk
        data = bytes(body[:_MAX_BODY])
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise TransportError("malformed answer (Content-Length)") from None
        if length > _MAX_BODY:
            keep = False
        data = reader.exactly(min(length, _MAX_BODY))
    elif status in (204, 304):
        data = b""
    else:  # the body ends when the server closes the connection
        keep = False
        while len(reader.buffer) < _MAX_BODY:
            try:
                reader.fill()
            except TransportError as error:
                if error.timed_out:
                    raise
                break
        data = bytes(reader.buffer[:_MAX_BODY])
    return HttpResponse(status, pieces[2] if len(pieces) > 2 else "", headers, data), keep


class SessionTransport:
    """Posts with a ``requests.Session``-like object (kept for ``FluxLoopSpanExporter(session=...)``).

    Its timeout bounds each socket operation, not the whole answer: the default :class:`SocketTransport` does.
    """

    def __init__(self, session: Any) -> None:
        self.session = session

    def post(self, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> HttpResponse:
        try:
            response = self.session.post(url, data=body, headers=dict(headers), timeout=_remaining(deadline))
        except TransportError:
            raise
        except Exception as error:
            refused = False
            current: BaseException | None = error
            for _ in range(8):
                if current is None:
                    break
                refused = refused or isinstance(current, ConnectionRefusedError) or "refused" in str(current)
                current = current.__cause__ or current.__context__ or next(
                    (a for a in getattr(current, "args", ())[:1] if isinstance(a, BaseException)), None)
            raise TransportError("connection refused" if refused else type(error).__name__,
                                 refused=refused) from None
        return HttpResponse(int(response.status_code), str(response.reason or ""),
                            {str(k).lower(): str(v) for k, v in response.headers.items()}, bytes(response.content or b""))

    def close(self) -> None:
        return None
