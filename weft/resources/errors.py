"""Errors raised while loading and checking manifests."""

from __future__ import annotations

from pydantic_core import PydanticCustomError

FIELD_ERROR = "weft_field"


class ManifestError(ValueError):
    """A manifest cannot be loaded or applied; the message is one line naming document and field."""


def field_error(path: str, message: str) -> PydanticCustomError:
    """An error a model validator raises about the field at ``path`` (camelCase) below its model."""
    return PydanticCustomError(FIELD_ERROR, "{path}: {message}", {"path": path, "message": message})
