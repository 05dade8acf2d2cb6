"""Emojivoto's pure parts: emoji and Vote RPC names, tally, failures, settings, pages."""

from __future__ import annotations

import random
import re
from urllib.parse import urlencode

import pytest

from weft.emojivoto import page, voting_pb2
from weft.emojivoto.emoji import ALL, DOUGHNUT, Emoji, find, vote_rpc
from weft.emojivoto.env import EnvError, parse_hostport, parse_port, parse_positive, setting
from weft.emojivoto.vote_bot import choose
from weft.emojivoto.voting import Tally, parse_duration, parse_failure_rate, should_fail

VOTING = voting_pb2.DESCRIPTOR.services_by_name["VotingService"]


# -- the emoji list ---------------------------------------------------------------------------


def test_99_distinct_emoji() -> None:
    assert len(ALL) == 99
    assert len({e.shortcode for e in ALL}) == 99
    assert len({e.unicode for e in ALL}) == 99


def test_classic_emoji_are_there() -> None:
    for shortcode in (":poop:", ":joy:", ":doughnut:", ":100:", ":sunglasses:", ":pizza:"):
        assert find(shortcode) is not None, shortcode
    assert find(":rocket:") == Emoji("🚀", ":rocket:")
    assert find(DOUGHNUT) == Emoji("🍩", ":doughnut:")
    assert find("rocket") is None
    assert find(":nope:") is None


def test_shortcodes_are_github_style() -> None:
    for e in ALL:
        assert re.fullmatch(r":[a-z0-9_]+:", e.shortcode), e.shortcode
        assert e.unicode and not e.unicode.isascii(), e


@pytest.mark.parametrize(
    ("shortcode", "rpc"),
    [
        (":poop:", "VotePoop"),
        (":joy:", "VoteJoy"),
        (":doughnut:", "VoteDoughnut"),
        (":100:", "Vote100"),
        (":star2:", "VoteStar2"),
        (":jack_o_lantern:", "VoteJackOLantern"),
        (":stuck_out_tongue_winking_eye:", "VoteStuckOutTongueWinkingEye"),
    ],
)
def test_vote_rpc_names(shortcode: str, rpc: str) -> None:
    assert vote_rpc(shortcode) == rpc


@pytest.mark.parametrize("shortcode", [":+1:", ":-1:", "joy", ":Joy:", "::", ":a__b:", ":_a:", ""])
def test_vote_rpc_refuses_shortcodes_that_name_no_rpc(shortcode: str) -> None:
    with pytest.raises(ValueError, match="cannot name a Vote RPC"):
        vote_rpc(shortcode)


def test_voting_proto_has_exactly_one_vote_rpc_per_emoji() -> None:
    methods = {m.name: m for m in VOTING.methods}
    votes = {name for name in methods if name != "Results"}
    assert votes == {vote_rpc(e.shortcode) for e in ALL}
    assert len(votes) == len(ALL)
    for name in votes:
        assert methods[name].input_type.name == "VoteRequest"
        assert methods[name].output_type.name == "VoteResponse"
    assert methods["Results"].output_type.name == "ResultsResponse"
    assert VOTING.full_name == "emojivoto.v1.VotingService"


# -- voting-svc's logic -----------------------------------------------------------------------


def test_tally_orders_by_votes_then_shortcode() -> None:
    tally = Tally()
    assert tally.results() == []
    for shortcode in (":pizza:", ":joy:", ":poop:", ":joy:", ":100:", ":joy:", ":poop:"):
        tally.vote(shortcode)
    assert tally.results() == [(":joy:", 3), (":poop:", 2), (":100:", 1), (":pizza:", 1)]


def test_only_doughnuts_fail() -> None:
    rng = random.Random(7)
    assert all(should_fail(DOUGHNUT, 1.0, rng.random) for _ in range(1000))
    assert not any(should_fail(DOUGHNUT, 0.0, rng.random) for _ in range(1000))
    assert not any(should_fail(":joy:", 1.0, rng.random) for _ in range(1000))


def test_failure_rate_is_a_probability() -> None:
    rng = random.Random(42)
    failures = sum(should_fail(DOUGHNUT, 0.3, rng.random) for _ in range(10_000))
    assert 2700 < failures < 3300
    assert should_fail(DOUGHNUT, 0.5, lambda: 0.49)
    assert not should_fail(DOUGHNUT, 0.5, lambda: 0.5)


@pytest.mark.parametrize(
    ("text", "rate"), [("0", 0.0), ("1", 1.0), ("0.25", 0.25), ("1.0", 1.0), (".5", 0.5)]
)
def test_parse_failure_rate(text: str, rate: float) -> None:
    assert parse_failure_rate(text) == rate


@pytest.mark.parametrize("text", ["abc", "1.5", "-0.1", "nan", "inf", "50%"])
def test_parse_failure_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"0\.0 to 1\.0"):
        parse_failure_rate(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1h2m3s", 3723.0),
        ("250us", 250e-6),
        ("250µs", 250e-6),
        ("100ns", 100e-9),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("1s500ms", 1.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1.5", "abc", "s", "1x", "-1s", "+1s", "1 s", "1S", "."])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


# -- settings ---------------------------------------------------------------------------------


def test_setting_defaults_when_unset_or_empty() -> None:
    assert setting({}, "GRPC_PORT", 8080, parse_port) == 8080
    assert setting({"GRPC_PORT": ""}, "GRPC_PORT", 8080, parse_port) == 8080
    assert setting({"GRPC_PORT": "9090"}, "GRPC_PORT", 8080, parse_port) == 9090
    assert setting({}, "TTL", None, parse_positive) is None


def test_setting_errors_name_the_variable() -> None:
    with pytest.raises(EnvError) as info:
        setting({"FAILURE_RATE": "abc"}, "FAILURE_RATE", 1.0, parse_failure_rate)
    assert str(info.value) == "invalid FAILURE_RATE='abc': expected a number from 0.0 to 1.0"


@pytest.mark.parametrize("text", ["-1", "65536", "http", "80a", ""])
def test_parse_port_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_port(text)


def test_parse_hostport() -> None:
    assert parse_hostport("web-svc.emojivoto:80") == "web-svc.emojivoto:80"
    assert parse_hostport("[::1]:8080") == "[::1]:8080"
    for bad in ("web-svc", ":80", "web-svc:http", "web-svc:"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), ("0.5", 0.5), ("50", 50.0)])
def test_parse_positive(text: str, value: float) -> None:
    assert parse_positive(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "abc", "inf", "nan"])
def test_parse_positive_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        parse_positive(text)


# -- vote-bot ---------------------------------------------------------------------------------


def test_bot_votes_doughnut_about_15_percent() -> None:
    rng = random.Random(3)
    shortcodes = [e.shortcode for e in ALL if e.shortcode != DOUGHNUT]
    choices = [choose(shortcodes, rng) for _ in range(10_000)]
    assert 1350 < choices.count(DOUGHNUT) < 1650
    assert set(choices) == {*shortcodes, DOUGHNUT}


# -- pages ------------------------------------------------------------------------------------

EVIL = Emoji('<img src=x onerror="alert(1)">', ":a&b:")


def test_index_links_every_emoji_and_escapes() -> None:
    html = page.index([*ALL, EVIL], "<script>alert('motd')</script>")
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html
    for e in ALL:
        assert e.unicode in html
        assert f'href="/vote?{urlencode({"choice": e.shortcode})}"' in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;motd&#x27;)&lt;/script&gt;" in html
    assert "<img" not in html
    assert 'href="/vote?choice=%3Aa%26b%3A"' in html
    assert 'title=":a&amp;b:"' in html
    assert 'href="/leaderboard"' in html


def test_index_without_message() -> None:
    assert 'class="motd"' not in page.index(ALL, None)


def test_vote_pages_escape() -> None:
    voted = page.voted(EVIL)
    assert "You voted for :a&amp;b:" in voted
    assert "<img" not in voted
    failed = page.vote_failed("<b>", "no emoji has the shortcode '<b>'")
    assert "Your vote for &lt;b&gt; could not be counted" in failed
    assert "<b>" not in failed
    assert 'href="/"' in failed
    assert "Your vote could not be counted" in page.vote_failed("", "no choice given")


def test_leaderboard_page() -> None:
    joy, pizza = find(":joy:"), find(":pizza:")
    assert joy is not None and pizza is not None
    html = page.leaderboard([(joy, 2), (pizza, 1), (EVIL, 1)])
    assert html.index("😂") < html.index("🍕")
    assert "<td>:joy:</td><td>2</td>" in html
    assert "<img" not in html and ":a&amp;b:" in html
    assert "No votes yet" in page.leaderboard([])


def test_error_page_escapes() -> None:
    html = page.error("UNAVAILABLE: <down>")
    assert "UNAVAILABLE: &lt;down&gt;" in html
