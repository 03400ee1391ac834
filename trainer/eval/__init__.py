"""Labelled evaluation behind `logdetect eval`: one module per dataset, one row shape (metrics)."""
