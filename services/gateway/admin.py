"""Catalogue management over HTTP (artworks, artists, influences), guarded by admin API keys.

Scaffold: the routes are filled in by the admin work of issue 5."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from artsearch.config import Env


@dataclass(frozen=True)
class AdminSettings:
    @classmethod
    def from_env(cls, env: Env) -> AdminSettings:
        return cls()


def install_admin_routes(app: FastAPI, settings: AdminSettings) -> None:
    """Adds the admin routes to the app."""
