"""The innermost ``instrument()`` context, in a ContextVar every layer can read (the pipeline's ``on_start`` too)."""

from __future__ import annotations

import contextvars
from typing import Any, Protocol


class Propagating(Protocol):
    """What a span started inside an ``instrument()`` block inherits from it."""

    def propagated_attributes(self) -> dict[str, Any]: ...


#: The innermost active ``instrument()`` context, or None. Set and reset by ``fluxloop._context`` only.
CURRENT: contextvars.ContextVar[Propagating | None] = contextvars.ContextVar("fluxloop_instrument", default=None)
