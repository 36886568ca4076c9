"""The influence service."""
