"""The control plane: each component is a subpackage, and consumes only weft.platform.Platform."""
