"""The metrics API: golden metrics, routes and edges from Prometheus, joined with the platform's
objects, over HTTP/JSON (``weft controller metrics-api``)."""
