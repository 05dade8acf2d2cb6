"""web's HTML pages, rendered from data (no I/O); every piece of text is HTML-escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import urlencode

from weft.emojivoto.emoji import Emoji

_STYLE = """
body { font-family: sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; }
nav a { margin-right: 1rem; }
.motd { background: #fff6d5; border: 1px solid #e6d28a; padding: .5rem 1rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, 4rem); gap: .5rem; }
.grid a { font-size: 2.5rem; text-align: center; text-decoration: none; }
.big { font-size: 5rem; }
table { border-collapse: collapse; }
td, th { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
td.emoji { font-size: 1.8rem; }
"""


def _layout(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        '<nav><a href="/">Vote</a><a href="/leaderboard">Leaderboard</a></nav>\n'
        f"{body}</body>\n</html>\n"
    )


def vote_href(shortcode: str) -> str:
    """The link that votes for ``shortcode`` (URL-encoded, not yet HTML-escaped)."""
    return "/vote?" + urlencode({"choice": shortcode})


def index(emoji: Sequence[Emoji], message: str | None) -> str:
    """The voting page: every emoji as a link that votes for it, and the message of the day."""
    motd = f'<p class="motd">{escape(message)}</p>\n' if message else ""
    links = "".join(
        f'<a href="{escape(vote_href(e.shortcode))}" title="{escape(e.shortcode)}">'
        f"{escape(e.unicode)}</a>\n"
        for e in emoji
    )
    return _layout(
        "Emoji Vote",
        f"<h1>🗳 Emoji Vote</h1>\n{motd}<p>Tap an emoji to vote for it.</p>\n"
        f'<div class="grid">\n{links}</div>\n',
    )


def voted(emoji: Emoji) -> str:
    """The page after a counted vote."""
    return _layout(
        "Voted",
        f'<p class="big">{escape(emoji.unicode)}</p>\n'
        f"<h1>You voted for {escape(emoji.shortcode)}</h1>\n"
        '<p><a href="/">Vote again</a> or <a href="/leaderboard">see the leaderboard</a>.</p>\n',
    )


def vote_failed(choice: str, reason: str) -> str:
    """The page after a vote (for ``choice``, if any) that could not be counted, saying why."""
    subject = f"Your vote for {escape(choice)}" if choice else "Your vote"
    return _layout(
        "Vote not counted",
        f"<h1>{subject} could not be counted</h1>\n"
        f"<p>{escape(reason)}</p>\n"
        '<p><a href="/">Back to voting</a></p>\n',
    )


def leaderboard(rows: Sequence[tuple[Emoji, int]]) -> str:
    """The leaderboard: a table of emoji and their votes, in the given order."""
    lines = "".join(
        f'<tr><td>{rank}</td><td class="emoji">{escape(e.unicode)}</td>'
        f"<td>{escape(e.shortcode)}</td><td>{votes}</td></tr>\n"
        for rank, (e, votes) in enumerate(rows, start=1)
    )
    table = (
        "<table>\n<tr><th>#</th><th>Emoji</th><th>Shortcode</th><th>Votes</th></tr>\n"
        f"{lines}</table>\n"
        if rows
        else "<p>No votes yet.</p>\n"
    )
    return _layout("Leaderboard", f"<h1>Leaderboard</h1>\n{table}")


def error(reason: str) -> str:
    """A short page for a failure of the services behind web."""
    return _layout(
        "Error",
        f"<h1>Something went wrong</h1>\n<p>{escape(reason)}</p>\n"
        '<p><a href="/">Back to voting</a></p>\n',
    )
