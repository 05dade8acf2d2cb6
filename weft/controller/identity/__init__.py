"""The identity service: a CA that signs proxy certificates (``Identity/Certify``)."""
