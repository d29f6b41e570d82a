"""The comparison of normalization layers on real data."""
