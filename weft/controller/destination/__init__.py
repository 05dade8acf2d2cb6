"""The destination service: the endpoints (and later the profiles) of a logical destination."""
