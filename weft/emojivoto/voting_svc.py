"""voting-svc: the ``emojivoto.v1.VotingService`` gRPC server, counting votes in memory.

Environment:

* ``GRPC_PORT`` (default 8080), served on all addresses.
* ``FAILURE_RATE`` (0.0-1.0, default 1.0): the probability that a vote for ``:doughnut:`` fails
  with status UNKNOWN, details ``ERROR``, and is not counted.
* ``ARTIFICIAL_DELAY`` (a Go duration such as ``500ms``; default none): added before answering
  each Vote RPC.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from weft.emojivoto import voting_pb2 as pb
from weft.emojivoto.emoji import ALL, vote_rpc
from weft.emojivoto.env import parse_port, setting
from weft.emojivoto.process import run, serve_grpc
from weft.emojivoto.voting import Tally, parse_duration, parse_failure_rate, should_fail

NAME = "voting-svc"
SERVICE = pb.DESCRIPTOR.services_by_name["VotingService"].full_name

log = logging.getLogger(NAME)

VoteHandler = Callable[[pb.VoteRequest, Any], Awaitable[pb.VoteResponse]]


class VotingService:
    """The RPCs over one :class:`Tally`."""

    def __init__(
        self, failure_rate: float, delay: float, rand: Callable[[], float] = random.random
    ) -> None:
        self.tally = Tally()
        self.failure_rate = failure_rate
        self.delay = delay
        self.rand = rand

    def vote(self, shortcode: str) -> VoteHandler:
        """The Vote RPC for ``shortcode``."""

        async def vote(request: pb.VoteRequest, context: Any) -> pb.VoteResponse:
            if self.delay:
                await asyncio.sleep(self.delay)
            if should_fail(shortcode, self.failure_rate, self.rand):
                await context.abort(grpc.StatusCode.UNKNOWN, "ERROR")
            self.tally.vote(shortcode)
            return pb.VoteResponse()

        return vote

    async def results(self, request: pb.ResultsRequest, context: Any) -> pb.ResultsResponse:
        """The ``Results`` RPC: the tally, most votes first."""
        return pb.ResultsResponse(
            results=[
                pb.VotingResult(Shortcode=shortcode, Votes=votes)
                for shortcode, votes in self.tally.results()
            ]
        )

    def handler(self) -> grpc.GenericRpcHandler:
        """Results and one Vote RPC per emoji, for ``server.add_generic_rpc_handlers``."""
        handlers = {
            vote_rpc(e.shortcode): grpc.unary_unary_rpc_method_handler(
                self.vote(e.shortcode),
                request_deserializer=pb.VoteRequest.FromString,
                response_serializer=pb.VoteResponse.SerializeToString,
            )
            for e in ALL
        }
        handlers["Results"] = grpc.unary_unary_rpc_method_handler(
            self.results,
            request_deserializer=pb.ResultsRequest.FromString,
            response_serializer=pb.ResultsResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def serve(env: Mapping[str, str], stop: asyncio.Event) -> None:
    """Serve VotingService on ``GRPC_PORT`` until ``stop`` is set."""
    port = setting(env, "GRPC_PORT", 8080, parse_port)
    failure_rate = setting(env, "FAILURE_RATE", 1.0, parse_failure_rate)
    delay = setting(env, "ARTIFICIAL_DELAY", 0.0, parse_duration)
    service = VotingService(failure_rate, delay)
    await serve_grpc(service.handler(), port, stop, log)


def main() -> None:
    """``python -m weft.emojivoto.voting_svc``."""
    run(NAME, serve)


if __name__ == "__main__":
    main()
