"""Testing kit: capture the spans your own agents produce and assert on them.

Also a pytest plugin (registered through the ``pytest11`` entry point) providing the ``fluxloop_spans`` fixture.
``import fluxloop`` never imports this module (nor pytest).

Example::

    def test_my_agent(fluxloop_spans):
        my_agent("hi")
        span = fluxloop_spans.by_name("invoke_agent my_agent")
        assert span.attributes["fluxloop.observation.type"] == "agent"
"""

from fluxloop._testing import CapturedSpans, capture_spans, fluxloop_spans

__all__ = ["CapturedSpans", "capture_spans", "fluxloop_spans"]
