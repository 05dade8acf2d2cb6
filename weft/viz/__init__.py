"""What the observability parts share (pure): resource names and the metrics API's vocabulary."""
