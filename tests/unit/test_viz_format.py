"""What the viz commands' output shares: windows, number formats, columns (pure)."""

from __future__ import annotations

import pytest

from weft.cli import viz_format as fmt


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("10s", 10.0), ("1m", 60.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1d", 86400.0)],
)
def test_prometheus_durations_are_windows(window: str, seconds: float) -> None:
    assert fmt.window_seconds(window) == seconds


@pytest.mark.parametrize("window", ["", "1", "1x", "m1", "1m1h", "0s", "-1m", " 1m"])
def test_a_bad_window_is_one_line_naming_it(window: str) -> None:
    with pytest.raises(fmt.InputError) as info:
        fmt.window_seconds(window)
    assert f'"{window}"' in str(info.value)
    assert "\n" not in str(info.value)


def test_linkerds_number_formats() -> None:
    assert fmt.percent(fmt.success_rate(95, 5)) == "95.00%"
    assert fmt.percent(fmt.success_rate(0, 0)) == "-"
    assert fmt.per_second(100 / 60) == "1.7rps"
    assert fmt.millis(48.9) == "48ms"
    assert fmt.millis(None) == "-"
    assert fmt.bytes_per_second(6000 / 60) == "100.0B/s"


def test_names_align_left_figures_right_three_spaces_apart_without_trailing_blanks() -> None:
    lines = fmt.table(
        ["NAME", "RPS", "NOTE"],
        [["web", "1.0rps", ""], ["vote-bot", "12.5rps", "x"]],
        [fmt.LEFT, fmt.RIGHT, fmt.LEFT],
    )
    assert lines == [
        "NAME           RPS   NOTE",
        "web         1.0rps",
        "vote-bot   12.5rps   x",
    ]


def test_protobuf_json_numbers_may_be_strings_or_absent() -> None:
    assert fmt.count({"n": "12"}, "n") == 12
    assert fmt.count({}, "n") == 0
    assert fmt.optional_float({"p": "NaN"}, "p") is None
    assert fmt.optional_float({"p": None}, "p") is None
    with pytest.raises(fmt.AnswerError, match="n is not a number"):
        fmt.count({"n": "many"}, "n")
