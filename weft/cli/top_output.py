"""``weft top`` output (pure): the aggregated table in Linkerd's columns, the sort keys, and the
ANSI text that redraws a terminal in place."""

from __future__ import annotations

from collections.abc import Sequence

from weft.cli import viz_format as fmt
from weft.viz.top import SORTS, TopRow

# Single keys that pick the sort while top runs (the same key again reverses it).
KEYS = {s[0]: s for s in SORTS}
QUIT = "q"

# ANSI/xterm sequences: the alternate screen, the cursor, cursor home, erase line / below.
ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"
HOME = "\x1b[H"
ERASE_LINE = "\x1b[K"
ERASE_BELOW = "\x1b[J"


def latency(ns: int) -> str:
    """``850µs``, ``12ms``, ``1.25s`` (rounded as Go prints a rounded time.Duration)."""
    micros = round(ns / 1_000)
    if micros < 1_000:
        return f"{micros}µs"
    millis = round(ns / 1_000_000)
    if millis < 1_000:
        return f"{millis}ms"
    return f"{millis / 1000:.3f}".rstrip("0").rstrip(".") + "s"


def top_table(rows: Sequence[TopRow], by_route: bool, hide_sources: bool) -> list[str]:
    """The table: Source Destination Method Path (or Route) Count Best Worst Last Success Rate."""
    header = [] if hide_sources else ["Source"]
    header += ["Destination"] + (["Route"] if by_route else ["Method", "Path"])
    align = [fmt.LEFT] * len(header)
    header += ["Count", "Best", "Worst", "Last", "Success Rate"]
    align += [fmt.RIGHT] * 5
    cells = []
    for row in rows:
        line = [] if hide_sources else [row.source]
        line += [row.destination] + ([row.path] if by_route else [row.method, row.path])
        line += [
            str(row.count),
            latency(row.best_ns),
            latency(row.worst_ns),
            latency(row.last_ns),
            fmt.percent(row.success_rate),
        ]
        cells.append(line)
    return fmt.table(header, cells, align)


def next_sort(sort: str, reverse: bool, key: str) -> tuple[str, bool] | None:
    """The sort after pressing ``key``: its column (again: reversed), or None for other keys."""
    chosen = KEYS.get(key)
    if chosen is None:
        return None
    return (chosen, not reverse) if chosen == sort else (chosen, False)


def title(target: str, sort: str, reverse: bool, keys: bool) -> str:
    """The line above the table: what is shown, its order, and the keys when they work."""
    order = f"sorted by {sort}{' (reversed)' if reverse else ''}"
    help_text = "; keys: " + " ".join(KEYS) + " sort (again: reverse), q quit" if keys else ""
    return f"weft top {target}: {order}{help_text}"


def screen(lines: Sequence[str], width: int, height: int) -> str:
    """ANSI text that redraws the terminal with ``lines``, clipped to the terminal's size."""
    shown = [line[:width] + ERASE_LINE for line in lines[: max(height - 1, 1)]]
    return HOME + "\n".join(shown) + "\n" + ERASE_BELOW
