"""`weft install`: the control plane as Kubernetes manifests (pure builders)."""
