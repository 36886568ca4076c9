"""The four services started as real processes on free loopback ports with a catalogue ingested: what the
end-to-end tests share (`from stack_support import catalogue_stack`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from artsearch_tools.catalogue.folder import Catalogue
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports


@contextmanager
def catalogue_stack(
    model_path: Path,
    catalogue: Catalogue,
    state_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    image_root: Path | None = None,
) -> Iterator[ServiceStack]:
    """The four services, ready, with every artwork of `catalogue` ingested; images served from
    `image_root` (default: the folder holding the catalogue's folder)."""
    settings = StackSettings(
        model_path=model_path,
        image_root=image_root or catalogue.root.resolve().parent,
        state_dir=state_dir,
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
        extra_env=dict(extra_env or {}),
    )
    with ServiceStack(settings) as running:
        running.wait_ready(timeout=120)
        targets = IngestTargets(
            settings.address("encoder"), settings.address("search"), settings.address("influence")
        )
        report = asyncio.run(ingest_catalogue(catalogue, targets))
        assert report.added == len(catalogue.entries), report.summary()
        yield running
