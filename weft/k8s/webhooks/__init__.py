"""Admission webhooks: the proxy injector and the ServiceProfile validator."""
