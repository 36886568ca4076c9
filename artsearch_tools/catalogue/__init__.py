"""Image catalogues: the folders `artsearch ingest` reads, and the builders of the demo catalogues."""

from artsearch_tools.catalogue.folder import (
    Catalogue,
    CatalogueEntry,
    CatalogueError,
    CatalogueProblem,
    load_catalogue,
    write_metadata_csv,
)

__all__ = [
    "Catalogue",
    "CatalogueEntry",
    "CatalogueError",
    "CatalogueProblem",
    "load_catalogue",
    "write_metadata_csv",
]
