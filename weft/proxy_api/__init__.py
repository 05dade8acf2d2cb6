"""The few proxy-API messages a proxy exchanges with the control plane, encoded and decoded by
hand (``wire`` is protobuf's wire format; ``identity`` and ``destination`` the messages).

protobuf's runtime (upb and its descriptor pool) costs a proxy about 3 MB of resident memory for
its whole life; these messages are a handful. ``weft/api``'s .proto files stay the contract: the
tests check every encoder against the generated classes' bytes and every decoder against what
the generated classes encode.
"""
