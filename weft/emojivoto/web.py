"""web: the emojivoto front end, HTML pages and a JSON API over emoji-svc and voting-svc (gRPC).

Routes: ``/`` (vote page), ``/vote?choice=:joy:``, ``/leaderboard``, and as JSON ``/api/list``,
``/api/vote?choice=:joy:`` and ``/api/leaderboard``. A missing or unknown choice answers 400; a
failed gRPC call (such as voting-svc refusing a doughnut) answers 500.

Environment: ``WEB_PORT`` (default 8080); ``EMOJISVC_HOST`` (``emoji-svc.emojivoto:8080``) and
``VOTINGSVC_HOST`` (``voting-svc.emojivoto:8080``), the services' ``host:port``;
``MESSAGE_OF_THE_DAY`` (optional), shown on the vote page.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Mapping
from typing import Any

import grpc.aio
from aiohttp import web
from aiohttp.typedefs import Handler

from weft.emojivoto import emoji_pb2, emoji_pb2_grpc, page, voting_pb2, voting_pb2_grpc
from weft.emojivoto.emoji import Emoji, vote_rpc
from weft.emojivoto.env import parse_hostport, parse_port, setting
from weft.emojivoto.process import run

NAME = "web"

log = logging.getLogger(NAME)

_dumps = functools.partial(json.dumps, ensure_ascii=False)


class BadChoice(Exception):
    """A vote without a choice, or for a shortcode no emoji has."""


def describe(exc: grpc.aio.AioRpcError) -> str:
    """A failed call's status for people: ``UNKNOWN: ERROR``."""
    return f"{exc.code().name}: {exc.details()}"


def emoji_json(emoji: Emoji) -> dict[str, str]:
    """An emoji as the API shows it."""
    return {"shortcode": emoji.shortcode, "unicode": emoji.unicode}


class Backends:
    """emoji-svc and voting-svc, through the generated stubs on the given channels."""

    def __init__(self, emoji_channel: grpc.aio.Channel, voting_channel: grpc.aio.Channel) -> None:
        self.emoji = emoji_pb2_grpc.EmojiServiceStub(emoji_channel)  # type: ignore[no-untyped-call]
        self.voting = voting_pb2_grpc.VotingServiceStub(voting_channel)  # type: ignore[no-untyped-call]

    async def list_all(self) -> list[Emoji]:
        """Every emoji, from ``ListAll``."""
        response = await self.emoji.ListAll(emoji_pb2.ListAllEmojiRequest())
        return [Emoji(e.unicode, e.shortcode) for e in response.list]

    async def find(self, shortcode: str) -> Emoji | None:
        """The emoji with ``shortcode``, from ``FindByShortcode``; ``None`` if there is none."""
        response = await self.emoji.FindByShortcode(
            emoji_pb2.FindByShortcodeRequest(Shortcode=shortcode)
        )
        if not response.HasField("Emoji"):
            return None
        return Emoji(response.Emoji.unicode, response.Emoji.shortcode)

    async def vote(self, choice: str) -> Emoji:
        """Vote for the emoji with shortcode ``choice`` with its Vote RPC; returns the emoji."""
        if not choice:
            raise BadChoice("no choice given")
        emoji = await self.find(choice)
        if emoji is None:
            raise BadChoice(f"no emoji has the shortcode {choice!r}")
        await getattr(self.voting, vote_rpc(emoji.shortcode))(voting_pb2.VoteRequest())
        return emoji

    async def leaderboard(self) -> list[tuple[Emoji, int]]:
        """``(emoji, votes)`` in ``Results`` order, most votes first."""
        results = (await self.voting.Results(voting_pb2.ResultsRequest())).results
        found = await asyncio.gather(*(self.find(r.Shortcode) for r in results))
        return [
            (emoji or Emoji("", r.Shortcode), r.Votes)
            for r, emoji in zip(results, found, strict=True)
        ]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bad choices answer 400 and gRPC failures 500: JSON under ``/api/``, else an HTML page."""
    try:
        return await handler(request)
    except BadChoice as exc:
        status, reason = 400, str(exc)
    except grpc.aio.AioRpcError as exc:
        status, reason = 500, describe(exc)
        log.warning("%s %s failed: %s", request.method, request.path_qs, reason)
    if request.path.startswith("/api/"):
        return _json({"error": reason}, status)
    return _html(page.error(reason), status)


class Web:
    """The request handlers."""

    def __init__(self, backends: Backends, message: str | None) -> None:
        self.backends = backends
        self.message = message

    def app(self) -> web.Application:
        """The aiohttp application with every route."""
        app = web.Application(middlewares=[_errors])
        app.router.add_get("/", self.index)
        app.router.add_get("/vote", self.vote_page)
        app.router.add_get("/leaderboard", self.leaderboard_page)
        app.router.add_get("/api/list", self.api_list)
        app.router.add_get("/api/vote", self.api_vote)
        app.router.add_get("/api/leaderboard", self.api_leaderboard)
        return app

    async def index(self, request: web.Request) -> web.Response:
        """``GET /``: the vote page."""
        return _html(page.index(await self.backends.list_all(), self.message))

    async def vote_page(self, request: web.Request) -> web.Response:
        """``GET /vote?choice=``: vote, then say whether it was counted."""
        choice = request.query.get("choice", "")
        try:
            emoji = await self.backends.vote(choice)
        except BadChoice as exc:
            return _html(page.vote_failed(choice, str(exc)), 400)
        except grpc.aio.AioRpcError as exc:
            log.warning("%s %s failed: %s", request.method, request.path_qs, describe(exc))
            return _html(page.vote_failed(choice, describe(exc)), 500)
        return _html(page.voted(emoji))

    async def leaderboard_page(self, request: web.Request) -> web.Response:
        """``GET /leaderboard``."""
        return _html(page.leaderboard(await self.backends.leaderboard()))

    async def api_list(self, request: web.Request) -> web.Response:
        """``GET /api/list``: every emoji."""
        return _json([emoji_json(e) for e in await self.backends.list_all()])

    async def api_vote(self, request: web.Request) -> web.Response:
        """``GET /api/vote?choice=``: vote; answers the emoji voted for."""
        return _json(emoji_json(await self.backends.vote(request.query.get("choice", ""))))

    async def api_leaderboard(self, request: web.Request) -> web.Response:
        """``GET /api/leaderboard``: the emoji with votes, most first."""
        return _json(
            [{**emoji_json(e), "votes": votes} for e, votes in await self.backends.leaderboard()]
        )


async def serve(env: Mapping[str, str], stop: asyncio.Event) -> None:
    """Serve HTTP on ``WEB_PORT`` until ``stop`` is set."""
    port = setting(env, "WEB_PORT", 8080, parse_port)
    emoji_host = setting(env, "EMOJISVC_HOST", "emoji-svc.emojivoto:8080", parse_hostport)
    voting_host = setting(env, "VOTINGSVC_HOST", "voting-svc.emojivoto:8080", parse_hostport)
    message = env.get("MESSAGE_OF_THE_DAY") or None
    async with (
        grpc.aio.insecure_channel(emoji_host) as emoji_channel,
        grpc.aio.insecure_channel(voting_host) as voting_channel,
    ):
        handlers = Web(Backends(emoji_channel, voting_channel), message)
        runner = web.AppRunner(handlers.app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "0.0.0.0", port).start()
            log.info("listening on 0.0.0.0:%d", runner.addresses[0][1])
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    """``python -m weft.emojivoto.web``."""
    run(NAME, serve)


if __name__ == "__main__":
    main()
