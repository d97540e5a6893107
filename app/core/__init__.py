"""Shared services. Nothing in here imports a feature module."""
