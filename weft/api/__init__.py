"""Linkerd's proxy API (linkerd2-proxy-api) as .proto files; code is generated at build."""
