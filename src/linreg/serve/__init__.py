"""Serving a trained model: its files (written, verified, loaded through one registry of formats,
`serve/formats.py`) and batch prediction."""
