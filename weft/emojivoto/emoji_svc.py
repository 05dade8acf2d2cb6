"""emoji-svc: the ``emojivoto.v1.EmojiService`` gRPC server over the fixed emoji list.

Environment: ``GRPC_PORT`` (default 8080), served on all addresses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import grpc

from weft.emojivoto import emoji_pb2 as pb
from weft.emojivoto.emoji import ALL, Emoji, find
from weft.emojivoto.env import parse_port, setting
from weft.emojivoto.process import run, serve_grpc

NAME = "emoji-svc"
SERVICE = pb.DESCRIPTOR.services_by_name["EmojiService"].full_name

log = logging.getLogger(NAME)


def to_pb(emoji: Emoji) -> pb.Emoji:
    """The protobuf message for ``emoji``."""
    return pb.Emoji(unicode=emoji.unicode, shortcode=emoji.shortcode)


async def list_all(request: pb.ListAllEmojiRequest, context: Any) -> pb.ListAllEmojiResponse:
    """The ``ListAll`` RPC: every emoji, in the list's order."""
    return pb.ListAllEmojiResponse(list=[to_pb(e) for e in ALL])


async def find_by_shortcode(
    request: pb.FindByShortcodeRequest, context: Any
) -> pb.FindByShortcodeResponse:
    """The ``FindByShortcode`` RPC: the emoji, or a response without one if none matches."""
    emoji = find(request.Shortcode)
    if emoji is None:
        return pb.FindByShortcodeResponse()
    return pb.FindByShortcodeResponse(Emoji=to_pb(emoji))


def handler() -> grpc.GenericRpcHandler:
    """The service's RPCs, for ``server.add_generic_rpc_handlers``."""
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ListAll": grpc.unary_unary_rpc_method_handler(
                list_all,
                request_deserializer=pb.ListAllEmojiRequest.FromString,
                response_serializer=pb.ListAllEmojiResponse.SerializeToString,
            ),
            "FindByShortcode": grpc.unary_unary_rpc_method_handler(
                find_by_shortcode,
                request_deserializer=pb.FindByShortcodeRequest.FromString,
                response_serializer=pb.FindByShortcodeResponse.SerializeToString,
            ),
        },
    )


async def serve(env: Mapping[str, str], stop: asyncio.Event) -> None:
    """Serve EmojiService on ``GRPC_PORT`` until ``stop`` is set."""
    port = setting(env, "GRPC_PORT", 8080, parse_port)
    await serve_grpc(handler(), port, stop, log)


def main() -> None:
    """``python -m weft.emojivoto.emoji_svc``."""
    run(NAME, serve)


if __name__ == "__main__":
    main()
