"""Berth: self-hosted serving of machine-learning models behind managed endpoints."""

__version__ = "0.1.0"
