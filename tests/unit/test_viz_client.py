"""How the viz commands word the failures of the agent's service proxy and the components."""

from __future__ import annotations

import pytest

from weft.cli.viz_client import METRICS_API, TAP, Component, VizError, explain, unwrap
from weft.local.api_client import ApiError


@pytest.mark.parametrize(
    ("component", "status", "message", "line"),
    [
        (
            METRICS_API,
            503,
            "service weft/weft-metrics-api has no ready endpoints",
            "the metrics API is not ready yet: see `weft check`",
        ),
        (
            TAP,
            503,
            "service weft/weft-tap has no ready endpoints",
            "the tap controller is not ready yet: see `weft check`",
        ),
        (
            TAP,
            404,
            'service "weft-tap" not found in namespace "weft"',
            "the tap controller is missing from this cluster (no service weft/weft-tap): "
            "see `weft check`",
        ),
        (
            METRICS_API,
            502,
            "cannot reach 10.244.0.9:8085: Connection refused",
            "the metrics API does not answer (cannot reach 10.244.0.9:8085: Connection refused):"
            " see `weft check`",
        ),
        # The component's own errors, even with the same statuses, pass through.
        (
            METRICS_API,
            503,
            "prometheus at http://p:9090: timeout",
            "prometheus at http://p:9090: timeout",
        ),
        (
            METRICS_API,
            404,
            "deployment/nope not found in namespace x",
            "deployment/nope not found in namespace x",
        ),
        (
            TAP,
            503,
            "service weft/weft-metrics-api has no ready endpoints",
            "service weft/weft-metrics-api has no ready endpoints",
        ),
    ],
)
def test_the_agents_answers_become_advice_and_the_components_pass_through(
    component: Component, status: int, message: str, line: str
) -> None:
    assert explain(component, ApiError(message, status)) == line


def test_an_ok_answer_is_unwrapped_and_an_error_answer_raised() -> None:
    assert unwrap("Edges", {"ok": {"edges": []}}) == {"edges": []}
    with pytest.raises(VizError, match=r"^bad selector$"):
        unwrap("Edges", {"error": {"resource": {}, "error": "bad selector"}})
    with pytest.raises(VizError, match="answered Edges without a result"):
        unwrap("Edges", {})
