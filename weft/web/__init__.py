"""The dashboard: ``weft controller web`` serves the built frontend and its JSON/WebSocket API."""
