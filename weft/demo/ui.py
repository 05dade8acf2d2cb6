"""How ``weft demo`` shows its progress: Linkerd-style check lines, one live line on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from weft.cli.check_results import GLYPHS


class Ui:
    """Prints sections, results and progress; a terminal gets one line rewritten in place."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out = out
        self.err = err
        self.live = out.isatty()
        self._progress = ""

    def _clear(self) -> None:
        if self._progress and self.live:
            self.out.write("\r\033[K")
        self._progress = ""

    def line(self, text: str) -> None:
        """A plain line."""
        self._clear()
        print(text, file=self.out, flush=True)

    def section(self, title: str) -> None:
        """A heading for the steps that follow."""
        self.line("")
        self.line(title)

    def ok(self, text: str) -> None:
        """A step that is done."""
        self.line(f"{GLYPHS['ok']} {text}")

    def fail(self, text: str) -> None:
        """A step that failed (the reason follows as an error)."""
        self.line(f"{GLYPHS['error']} {text}")

    def progress(self, text: str) -> None:
        """Where a wait stands: rewritten in place on a terminal, printed when it changes else."""
        if text == self._progress:
            return
        if self.live:
            self.out.write(f"\r\033[K… {text}")
            self.out.flush()
        else:
            print(f"… {text}", file=self.out, flush=True)
        self._progress = text

    def error(self, text: str) -> None:
        """The one line that says why the demo stopped and what to do."""
        self._clear()
        print(f"weft demo: {text}", file=self.err, flush=True)
