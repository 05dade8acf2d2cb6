"""``weft top``: a live table of a resource's requests, aggregated from tap events, as
``linkerd top`` shows it.

On a terminal the table redraws in place (the alternate screen, plain ANSI) and single keys
change the sort while stdin is a terminal too; Ctrl-C or ``q`` quit and leave the last table on
the normal screen. When stdout is not a terminal the table is printed again every few seconds
while it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import termios
import tty
from types import TracebackType
from typing import Any, TextIO

import click

from weft.cli import viz_client
from weft.cli.tap import tap_options, tap_query
from weft.cli.top_output import (
    ENTER_SCREEN,
    LEAVE_SCREEN,
    QUIT,
    next_sort,
    screen,
    title,
    top_table,
)
from weft.viz.tap_events import TapEventError, parse_event
from weft.viz.tap_query import TapQuery
from weft.viz.top import SORTS, TopTable

REDRAW_INTERVAL = 0.25  # seconds between redraws on a terminal (when something changed)
PRINT_INTERVAL = 2.0  # seconds between tables printed to a pipe or file (when changed)


class Display:
    """Where the table goes: a terminal redrawn in place (with keys), or a stream printed to."""

    def __init__(
        self,
        table: TopTable,
        target: str,
        sort: str,
        out: TextIO,
        keys_from: int | None,
        on_quit: asyncio.Event,
    ) -> None:
        self.table = table
        self.target = target
        self.sort = sort
        self.reverse = False
        self.out = out
        self.interactive = out.isatty()
        self.keys_from = keys_from if self.interactive else None
        self.on_quit = on_quit
        self.interval = REDRAW_INTERVAL if self.interactive else PRINT_INTERVAL
        self._dirty = self.interactive  # a terminal shows the (empty) table at once
        self._saved_tty: list[Any] | None = None

    def changed(self) -> None:
        """Something to show: redraw at the next tick."""
        self._dirty = True

    def _lines(self) -> list[str]:
        rows = self.table.rows(self.sort, self.reverse)
        return top_table(rows, self.table.by_route, self.table.hide_sources)

    def refresh(self) -> None:
        """Show the table if it changed since the last time."""
        if not self._dirty:
            return
        self._dirty = False
        if self.interactive:
            size = shutil.get_terminal_size()
            head = title(self.target, self.sort, self.reverse, self.keys_from is not None)
            self.out.write(screen([head, "", *self._lines()], size.columns, size.lines))
        elif self.table.rows():
            self.out.write("\n".join(self._lines()) + "\n\n")
        self.out.flush()

    def _key(self) -> None:
        assert self.keys_from is not None
        for key in os.read(self.keys_from, 64).decode(errors="replace"):
            if key == QUIT:
                self.on_quit.set()
            elif (chosen := next_sort(self.sort, self.reverse, key)) is not None:
                self.sort, self.reverse = chosen
                self.changed()

    def __enter__(self) -> Display:
        if not self.interactive:
            return self
        loop = asyncio.get_running_loop()
        if self.keys_from is not None:
            self._saved_tty = termios.tcgetattr(self.keys_from)
            tty.setcbreak(self.keys_from)
            loop.add_reader(self.keys_from, self._key)
        loop.add_signal_handler(signal.SIGWINCH, self.changed)
        self.out.write(ENTER_SCREEN)
        self.out.flush()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.interactive:
            loop = asyncio.get_running_loop()
            loop.remove_signal_handler(signal.SIGWINCH)
            if self.keys_from is not None:
                loop.remove_reader(self.keys_from)
                if self._saved_tty is not None:
                    termios.tcsetattr(self.keys_from, termios.TCSADRAIN, self._saved_tty)
            self.out.write(LEAVE_SCREEN)
            if self.table.rows():
                self.out.write("\n".join(self._lines()) + "\n")
        else:
            self.refresh()
        self.out.flush()


async def watch(client: viz_client.VizClient, query: TapQuery, display: Display) -> None:
    """Feed the tap stream into the display's table until the stream ends or the user quits."""
    done = display.on_quit

    async def feed() -> None:
        try:
            async for data in client.tap(query.url_path(), query.body()):
                with contextlib.suppress(TapEventError):  # not a TapEvent: nothing to count
                    if display.table.add(parse_event(data)):
                        display.changed()
        finally:
            done.set()

    feeder = asyncio.create_task(feed())
    try:
        with display:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), display.interval)
                display.refresh()
    finally:
        if not feeder.done():
            feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder  # re-raises the stream's failure, after the terminal is restored


@click.command()
@click.argument("resources", nargs=-1)
@tap_options
@click.option("--routes", "by_route", is_flag=True, help="Group by route, not method and path.")
@click.option("--hide-sources", is_flag=True, help="Leave out the Source column.")
@click.option(
    "--sort",
    type=click.Choice(SORTS),
    default="count",
    show_default=True,
    help="Order of the rows (keys c b w l s p while running; again: reversed).",
)
def top(
    resources: tuple[str, ...],
    namespace: str,
    to: str | None,
    to_namespace: str | None,
    method: str,
    path: str,
    authority: str,
    scheme: str,
    max_rps: float,
    by_route: bool,
    hide_sources: bool,
    sort: str,
    cluster_name: str,
    state_dir: str | None,
) -> None:
    """A live table of a RESOURCE's requests (deploy/web, po/x, ns/emojivoto)."""
    query = viz_client.checked(
        "top",
        lambda: tap_query(
            resources, namespace, to, to_namespace, method, path, authority, scheme, max_rps
        ),
    )
    keys_from = sys.stdin.fileno() if sys.stdin.isatty() else None

    async def run(client: viz_client.VizClient) -> None:
        table = TopTable(by_route=by_route, hide_sources=hide_sources)
        display = Display(table, str(query.target), sort, sys.stdout, keys_from, asyncio.Event())
        await watch(client, query, display)

    viz_client.run("top", cluster_name, state_dir, run, interrupted_status=0)
