"""The emoji people vote for: GitHub-style shortcodes with their unicode, and the Vote RPC names."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Emoji:
    """One emoji: its character(s) and its shortcode (``:joy:``)."""

    unicode: str
    shortcode: str


DOUGHNUT = ":doughnut:"

ALL: tuple[Emoji, ...] = (
    Emoji("💩", ":poop:"),
    Emoji("😂", ":joy:"),
    Emoji("🍩", DOUGHNUT),
    Emoji("💯", ":100:"),
    Emoji("😎", ":sunglasses:"),
    Emoji("🍕", ":pizza:"),
    Emoji("🚀", ":rocket:"),
    Emoji("😜", ":stuck_out_tongue_winking_eye:"),
    Emoji("🤑", ":money_mouth_face:"),
    Emoji("😳", ":flushed:"),
    Emoji("😷", ":mask:"),
    Emoji("🤓", ":nerd_face:"),
    Emoji("👻", ":ghost:"),
    Emoji("💀", ":skull:"),
    Emoji("😻", ":heart_eyes_cat:"),
    Emoji("🙉", ":hear_no_evil:"),
    Emoji("🙈", ":see_no_evil:"),
    Emoji("🙊", ":speak_no_evil:"),
    Emoji("😀", ":grinning:"),
    Emoji("😄", ":smile:"),
    Emoji("😆", ":laughing:"),
    Emoji("😉", ":wink:"),
    Emoji("😊", ":blush:"),
    Emoji("😍", ":heart_eyes:"),
    Emoji("😘", ":kissing_heart:"),
    Emoji("🤔", ":thinking:"),
    Emoji("🙃", ":upside_down_face:"),
    Emoji("🤣", ":rofl:"),
    Emoji("😭", ":sob:"),
    Emoji("😱", ":scream:"),
    Emoji("😡", ":rage:"),
    Emoji("😴", ":sleeping:"),
    Emoji("😇", ":innocent:"),
    Emoji("😈", ":smiling_imp:"),
    Emoji("🤡", ":clown_face:"),
    Emoji("🤖", ":robot:"),
    Emoji("👽", ":alien:"),
    Emoji("🎃", ":jack_o_lantern:"),
    Emoji("👍", ":thumbsup:"),
    Emoji("👏", ":clap:"),
    Emoji("👋", ":wave:"),
    Emoji("🙏", ":pray:"),
    Emoji("🐶", ":dog:"),
    Emoji("🐱", ":cat:"),
    Emoji("🐰", ":rabbit:"),
    Emoji("🦊", ":fox_face:"),
    Emoji("🐻", ":bear:"),
    Emoji("🐼", ":panda_face:"),
    Emoji("🐯", ":tiger:"),
    Emoji("🦁", ":lion:"),
    Emoji("🐮", ":cow:"),
    Emoji("🐷", ":pig:"),
    Emoji("🐸", ":frog:"),
    Emoji("🐵", ":monkey_face:"),
    Emoji("🐧", ":penguin:"),
    Emoji("🦉", ":owl:"),
    Emoji("🦄", ":unicorn:"),
    Emoji("🐌", ":snail:"),
    Emoji("🐙", ":octopus:"),
    Emoji("🐳", ":whale:"),
    Emoji("🐬", ":dolphin:"),
    Emoji("🐢", ":turtle:"),
    Emoji("🐍", ":snake:"),
    Emoji("🐉", ":dragon:"),
    Emoji("🐣", ":hatching_chick:"),
    Emoji("🌮", ":taco:"),
    Emoji("🌯", ":burrito:"),
    Emoji("🍔", ":hamburger:"),
    Emoji("🍟", ":fries:"),
    Emoji("🌭", ":hotdog:"),
    Emoji("🍜", ":ramen:"),
    Emoji("🍣", ":sushi:"),
    Emoji("🥓", ":bacon:"),
    Emoji("🥐", ":croissant:"),
    Emoji("🍪", ":cookie:"),
    Emoji("🍰", ":cake:"),
    Emoji("🍨", ":ice_cream:"),
    Emoji("🥑", ":avocado:"),
    Emoji("🍉", ":watermelon:"),
    Emoji("🍌", ":banana:"),
    Emoji("🍓", ":strawberry:"),
    Emoji("☕", ":coffee:"),
    Emoji("🍺", ":beer:"),
    Emoji("🍾", ":champagne:"),
    Emoji("🍹", ":tropical_drink:"),
    Emoji("🔥", ":fire:"),
    Emoji("✨", ":sparkles:"),
    Emoji("⚡", ":zap:"),
    Emoji("🌈", ":rainbow:"),
    Emoji("🌞", ":sun_with_face:"),
    Emoji("⛄", ":snowman:"),
    Emoji("🌟", ":star2:"),
    Emoji("🎉", ":tada:"),
    Emoji("🎈", ":balloon:"),
    Emoji("🎁", ":gift:"),
    Emoji("🏆", ":trophy:"),
    Emoji("⚽", ":soccer:"),
    Emoji("🎸", ":guitar:"),
    Emoji("👑", ":crown:"),
)

_BY_SHORTCODE = {e.shortcode: e for e in ALL}

# A shortcode usable as an RPC name: lower-case words of letters and digits joined by "_".
_SHORTCODE = re.compile(r":([a-z0-9]+(?:_[a-z0-9]+)*):")


def find(shortcode: str) -> Emoji | None:
    """The emoji with ``shortcode``, or ``None``."""
    return _BY_SHORTCODE.get(shortcode)


def vote_rpc(shortcode: str) -> str:
    """The VotingService method voting for ``shortcode``: ``:hear_no_evil:`` → ``VoteHearNoEvil``.

    Raises ``ValueError`` for shortcodes that make no RPC name (``:+1:``, ``:Joy:``).
    """
    match = _SHORTCODE.fullmatch(shortcode)
    if match is None:
        raise ValueError(f"{shortcode!r} cannot name a Vote RPC")
    return "Vote" + "".join(word[:1].upper() + word[1:] for word in match[1].split("_"))
