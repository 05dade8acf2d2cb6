"""weft on Kubernetes: the platform over the Kubernetes API, install manifests, admission
webhooks and Kubernetes checks."""
