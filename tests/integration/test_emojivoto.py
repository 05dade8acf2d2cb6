"""Emojivoto's four programs as real processes on loopback ports.

emoji-svc is shared by the module (it has no state); every test gets its own voting-svc and web,
so each starts with an empty tally. The servers are started on port 0: each binds a port of its
own and logs it (``listening on 0.0.0.0:<port>``), which is how the test learns it, so no port is
ever chosen free and bound later. vote-bot is ready once it has logged its start line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from harness.loopback import refused_port
from harness.mesh import wait_for
from weft.emojivoto.emoji import ALL

TIMEOUT = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]


LISTENING = re.compile(r"listening on 0\.0\.0\.0:(\d+)$", re.MULTILINE)


@dataclass
class Program:
    """One running ``python -m weft.emojivoto.<module>``; stdout and stderr go to ``log_path``;
    ``port`` is the one a server said it listens on."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    def output(self) -> str:
        """Everything the program has written so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether it still runs; an ``AssertionError`` with its output if it exited."""
        status = self.popen.poll()
        assert status is None, f"{self.name} exited with {status}:\n{self.output()}"
        return True

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit status."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                return self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(grace)


class Programs:
    """Starts programs and stops every one still running on :meth:`close`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Program] = []

    def start(self, module: str, **env: str) -> Program:
        """Start ``weft.emojivoto.<module>`` with ``env`` added to ours."""
        log_path = self.log_dir / f"{module}-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", f"weft.emojivoto.{module}"],
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        program = Program(module, popen, log_path)
        self.started.append(program)
        return program

    def start_listening(self, module: str, **env: str) -> Program:
        """Start a server (its port variable set to 0 in ``env``) and wait until it logs the
        port it bound; that is ``program.port``."""
        return wait_until_listening(self.start(module, **env))

    def close(self) -> None:
        """Stop what still runs."""
        for program in self.started:
            program.stop()


def wait_until_listening(program: Program) -> Program:
    """Wait until ``program`` logs the port it listens on (failing at once if it exits)."""

    def port() -> int:
        program.alive()
        found = LISTENING.search(program.output())
        return int(found.group(1)) if found else 0

    program.port = wait_for(port, TIMEOUT, what=f"{program.name} to listen")
    return program


@dataclass
class Reply:
    """An HTTP response."""

    status: int
    body: str
    content_type: str

    def json(self) -> Any:
        """The body as JSON (the content type must say so)."""
        assert self.content_type == "application/json", self
        return json.loads(self.body)


def get(url: str) -> Reply:
    """``GET url``, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as rsp:
            return Reply(rsp.status, rsp.read().decode(), rsp.headers.get_content_type())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, err.read().decode(), err.headers.get_content_type())


@dataclass
class Stack:
    """voting-svc and web on their own ports, with the module's emoji-svc."""

    voting: Program
    web: Program
    web_port: int

    def get(self, path: str, **query: str) -> Reply:
        """``GET`` a path of web, with ``query`` URL-encoded."""
        suffix = f"?{urlencode(query)}" if query else ""
        return get(f"http://127.0.0.1:{self.web_port}{path}{suffix}")

    def vote(self, shortcode: str) -> Reply:
        """``GET /api/vote?choice=<shortcode>``."""
        return self.get("/api/vote", choice=shortcode)

    def leaderboard(self) -> list[tuple[str, str, int]]:
        """``(shortcode, unicode, votes)`` from ``/api/leaderboard``."""
        reply = self.get("/api/leaderboard")
        assert reply.status == 200, reply
        return [(row["shortcode"], row["unicode"], row["votes"]) for row in reply.json()]


StartStack = Callable[..., Stack]


@pytest.fixture(scope="module")
def emoji_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An emoji-svc for the module; its port."""
    programs = Programs(tmp_path_factory.mktemp("emoji-svc"))
    try:
        yield programs.start_listening("emoji_svc", GRPC_PORT="0").port
    finally:
        programs.close()


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    """Programs started by the test, stopped after it."""
    started = Programs(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def start_stack(programs: Programs, emoji_port: int) -> StartStack:
    """``start_stack(voting_env=..., web_env=...)`` starts voting-svc and web, and waits."""

    def start(
        voting_env: dict[str, str] | None = None, web_env: dict[str, str] | None = None
    ) -> Stack:
        voting = programs.start_listening("voting_svc", GRPC_PORT="0", **(voting_env or {}))
        web = programs.start_listening(
            "web",
            WEB_PORT="0",
            EMOJISVC_HOST=f"127.0.0.1:{emoji_port}",
            VOTINGSVC_HOST=f"127.0.0.1:{voting.port}",
            **(web_env or {}),
        )
        return Stack(voting, web, web.port)

    return start


@pytest.fixture
def stack(start_stack: StartStack) -> Stack:
    """voting-svc and web with the default settings."""
    return start_stack()


# -- web's API and pages ----------------------------------------------------------------------


def test_api_list_has_every_emoji(stack: Stack) -> None:
    reply = stack.get("/api/list")
    assert reply.status == 200
    listed = reply.json()
    assert len(listed) == 99
    assert listed == [{"shortcode": e.shortcode, "unicode": e.unicode} for e in ALL]


def test_index_page_links_every_emoji(start_stack: StartStack) -> None:
    stack = start_stack(web_env={"MESSAGE_OF_THE_DAY": "Vote early & <often>"})
    reply = stack.get("/")
    assert reply.status == 200
    assert reply.content_type == "text/html"
    for e in ALL:
        assert e.unicode in reply.body
        assert f'href="/vote?{urlencode({"choice": e.shortcode})}"' in reply.body
    assert 'href="/leaderboard"' in reply.body
    assert "Vote early &amp; &lt;often&gt;" in reply.body


def test_votes_make_the_leaderboard(stack: Stack) -> None:
    assert stack.leaderboard() == []
    for _ in range(2):
        reply = stack.vote(":joy:")
        assert reply.status == 200
        assert reply.json() == {"shortcode": ":joy:", "unicode": "😂"}
    page = stack.get("/vote", choice=":pizza:")
    assert page.status == 200
    assert "You voted for :pizza:" in page.body

    assert stack.leaderboard() == [(":joy:", "😂", 2), (":pizza:", "🍕", 1)]
    board = stack.get("/leaderboard")
    assert board.status == 200
    assert board.body.index(":joy:") < board.body.index(":pizza:")


def test_doughnut_votes_fail_and_are_not_counted(stack: Stack) -> None:
    reply = stack.vote(":doughnut:")
    assert reply.status == 500
    assert "ERROR" in reply.json()["error"]
    page = stack.get("/vote", choice=":doughnut:")
    assert page.status == 500
    assert "could not be counted" in page.body
    assert 'href="/"' in page.body
    assert stack.vote(":joy:").status == 200
    assert stack.leaderboard() == [(":joy:", "😂", 1)]


def test_missing_or_unknown_choice_is_400(stack: Stack) -> None:
    for reply in (stack.get("/api/vote"), stack.vote(""), stack.vote(":nope:"), stack.vote("joy")):
        assert reply.status == 400, reply
        assert reply.json()["error"]
    page = stack.get("/vote", choice=":nope:")
    assert page.status == 400
    assert "could not be counted" in page.body
    assert stack.leaderboard() == []


def test_failure_rate_0_counts_doughnuts(start_stack: StartStack) -> None:
    stack = start_stack(voting_env={"FAILURE_RATE": "0"})
    reply = stack.vote(":doughnut:")
    assert reply.status == 200
    assert reply.json() == {"shortcode": ":doughnut:", "unicode": "🍩"}
    assert stack.leaderboard() == [(":doughnut:", "🍩", 1)]


def test_artificial_delay_slows_votes(start_stack: StartStack) -> None:
    stack = start_stack(voting_env={"ARTIFICIAL_DELAY": "300ms"})
    started = time.monotonic()
    reply = stack.vote(":rocket:")
    assert time.monotonic() - started >= 0.3
    assert reply.status == 200


def test_emoji_svc_down_is_500(programs: Programs) -> None:
    with refused_port() as closed:
        web_port = programs.start_listening(
            "web",
            WEB_PORT="0",
            EMOJISVC_HOST=f"127.0.0.1:{closed}",
            VOTINGSVC_HOST=f"127.0.0.1:{closed}",
        ).port
        api = get(f"http://127.0.0.1:{web_port}/api/list")
        assert api.status == 500
        assert "UNAVAILABLE" in api.json()["error"]
        page = get(f"http://127.0.0.1:{web_port}/")
        assert page.status == 500
        assert page.content_type == "text/html"


# -- vote-bot ---------------------------------------------------------------------------------


def test_vote_bot_votes_until_its_ttl(stack: Stack, programs: Programs) -> None:
    bot = programs.start(
        "vote_bot", WEB_HOST=f"127.0.0.1:{stack.web_port}", REQUEST_RATE="50", TTL="2"
    )
    assert bot.popen.wait(TIMEOUT) == 0, bot.output()
    board = stack.leaderboard()
    assert board
    assert sum(votes for _, _, votes in board) > 10
    assert ":doughnut:" not in {shortcode for shortcode, _, _ in board}
    assert "vote for :doughnut: failed: HTTP 500" in bot.output()


def test_vote_bot_keeps_going_without_web(programs: Programs) -> None:
    with refused_port() as closed:
        bot = programs.start("vote_bot", WEB_HOST=f"127.0.0.1:{closed}", REQUEST_RATE="20", TTL="1")
        assert bot.popen.wait(TIMEOUT) == 0, bot.output()
    assert bot.output().count("cannot talk to web") >= 2


# -- settings and lifecycle -------------------------------------------------------------------


def test_invalid_failure_rate_exits_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "weft.emojivoto.voting_svc"],
        env={**os.environ, "FAILURE_RATE": "abc", "GRPC_PORT": "0"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "FAILURE_RATE" in lines[0]


@pytest.mark.parametrize(
    ("module", "name", "sig"),
    [
        ("emoji_svc", "emoji-svc", signal.SIGTERM),
        ("voting_svc", "voting-svc", signal.SIGTERM),
        ("web", "web", signal.SIGTERM),
        ("web", "web", signal.SIGINT),
    ],
    ids=["emoji-svc-SIGTERM", "voting-svc-SIGTERM", "web-SIGTERM", "web-SIGINT"],
)
def test_servers_log_start_and_exit_0_on_signal(
    programs: Programs, module: str, name: str, sig: signal.Signals
) -> None:
    program = programs.start_listening(module, GRPC_PORT="0", WEB_PORT="0")
    assert program.port > 0
    assert program.output().splitlines()[0] == f"{name} listening on 0.0.0.0:{program.port}"
    program.popen.send_signal(sig)
    assert program.popen.wait(TIMEOUT) == 0, program.output()


def test_vote_bot_exits_0_on_sigterm(programs: Programs) -> None:
    with refused_port() as closed:
        web_host = f"127.0.0.1:{closed}"
        bot = programs.start("vote_bot", WEB_HOST=web_host)
        line = f"vote-bot voting through http://{web_host} at 1 request/s"
        wait_for(lambda: bot.alive() and line in bot.output(), TIMEOUT, what="the start line")
        bot.popen.send_signal(signal.SIGTERM)
        assert bot.popen.wait(TIMEOUT) == 0, bot.output()
