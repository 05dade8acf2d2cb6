"""Prometheus for the mesh: its configuration, the targets it scrapes and its command line."""
