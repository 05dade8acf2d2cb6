"""Certificate logic for weft's identity service: names, issuing, trust files and checks."""
