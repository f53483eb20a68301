"""Configuration every package may import: settings, logging, derived keys, reference data."""
