"""Artwork images and thumbnails served by the gateway, so results can be shown.

Scaffold: the routes are filled in by the media work of issue 5."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from artsearch.config import Env


@dataclass(frozen=True)
class MediaSettings:
    @classmethod
    def from_env(cls, env: Env) -> MediaSettings:
        return cls()


def install_media_routes(app: FastAPI, settings: MediaSettings) -> None:
    """Adds the image and thumbnail routes to the app."""
