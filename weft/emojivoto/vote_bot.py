"""vote-bot: keeps voting through web's JSON API, so the app always has traffic.

Each tick it sleeps ``1/REQUEST_RATE`` seconds, fetches ``/api/list`` and votes with
``/api/vote``: for ``:doughnut:`` 15% of the time, else for a random emoji. Failures (HTTP
errors, web unreachable) are logged and the bot carries on at the next tick.

Environment: ``WEB_HOST`` (default ``web-svc.emojivoto:80``), ``HOST_OVERRIDE`` (optional Host
header), ``REQUEST_RATE`` (requests per second, default 1), ``TTL`` (optional: exit 0 after
that many seconds).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence

import aiohttp

from weft.emojivoto.emoji import DOUGHNUT
from weft.emojivoto.env import parse_hostport, parse_positive, setting
from weft.emojivoto.process import run

NAME = "vote-bot"
DOUGHNUT_SHARE = 0.15
REQUEST_TIMEOUT = 10.0

log = logging.getLogger(NAME)


def choose(shortcodes: Sequence[str], rng: random.Random) -> str:
    """The next vote: :data:`DOUGHNUT` with probability 0.15, else any of ``shortcodes``."""
    if rng.random() < DOUGHNUT_SHARE:
        return DOUGHNUT
    return rng.choice(shortcodes)


async def vote_once(session: aiohttp.ClientSession, rng: random.Random) -> None:
    """List the emoji and vote for one; logs what went wrong instead of raising."""
    try:
        async with session.get("/api/list") as rsp:
            if rsp.status != 200:
                log.warning("GET /api/list failed: HTTP %d", rsp.status)
                return
            shortcodes = [e["shortcode"] for e in await rsp.json()]
        if not shortcodes:
            log.warning("GET /api/list: no emoji to vote for")
            return
        choice = choose(shortcodes, rng)
        async with session.get("/api/vote", params={"choice": choice}) as rsp:
            if rsp.status != 200:
                log.warning("vote for %s failed: HTTP %d", choice, rsp.status)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot talk to web: %s", exc or type(exc).__name__)


async def stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``stop``; whether it was set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def vote_forever(env: Mapping[str, str], stop: asyncio.Event) -> None:
    """Vote every ``1/REQUEST_RATE`` seconds until ``stop`` is set or ``TTL`` has passed."""
    web_host = setting(env, "WEB_HOST", "web-svc.emojivoto:80", parse_hostport)
    host_override = env.get("HOST_OVERRIDE") or None
    rate = setting(env, "REQUEST_RATE", 1.0, parse_positive)
    ttl = setting(env, "TTL", None, parse_positive)
    if ttl is not None:
        asyncio.get_running_loop().call_later(ttl, stop.set)
    rng = random.Random()
    async with aiohttp.ClientSession(
        base_url=f"http://{web_host}",
        headers={"Host": host_override} if host_override else None,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    ) as session:
        log.info("voting through http://%s at %g request/s", web_host, rate)
        while not await stopped(stop, 1 / rate):
            await vote_once(session, rng)


def main() -> None:
    """``python -m weft.emojivoto.vote_bot``."""
    run(NAME, vote_forever)


if __name__ == "__main__":
    main()
