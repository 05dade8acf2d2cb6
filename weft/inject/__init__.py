"""The proxy injector: adds Linkerd's ``linkerd-init`` and ``linkerd-proxy`` to pod templates."""

from weft.inject.annotations import InjectError
from weft.inject.config import InjectConfig
from weft.inject.inject import decide, inject_pod_template, uninject_pod_template

__all__ = ["InjectConfig", "InjectError", "decide", "inject_pod_template", "uninject_pod_template"]
