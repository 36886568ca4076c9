"""The declaration of what a catalogue's style labels are, from the folder or `artsearch ingest
--style-labels`, down to the record ingest stores (extra["style_labels"])."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from artsearch_tools.catalogue.folder import write_catalogue_info
from artsearch_tools.cli import build_parser
from artsearch_tools.ingest import artwork_record
from artsearch_tools.ingest_cli import _load


def catalogue_folder(folder: Path, declared: str | None = None) -> Path:
    folder.mkdir()
    Image.new("RGB", (8, 6), (10, 20, 30)).save(folder / "wave.png")
    (folder / "metadata.csv").write_text(
        "filename,title,style,style_labels\nwave.png,Wave,Ukiyo-e,from-a-column\n", encoding="utf-8"
    )
    if declared:
        write_catalogue_info(folder, declared)
    return folder


def stored_kind(folder: Path, *flags: str) -> str:
    args = build_parser().parse_args(["ingest", str(folder), *flags])
    catalogue = _load(args)
    return artwork_record(catalogue, catalogue.entries[0]).extra["style_labels"]


def test_an_undeclared_catalogue_is_stored_as_art_styles(tmp_path):
    # The catalogue's declaration (here: none, so art) overrides a metadata column of the same name.
    assert stored_kind(catalogue_folder(tmp_path / "museum")) == "art"


def test_the_folder_declaration_is_stored_and_the_flag_overrides_it(tmp_path):
    folder = catalogue_folder(tmp_path / "clipart", declared="category")
    assert stored_kind(folder) == "category"
    assert stored_kind(folder, "--style-labels", "art") == "art"
    assert stored_kind(catalogue_folder(tmp_path / "icons"), "--style-labels", "category") == "category"


def test_an_unknown_kind_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", str(tmp_path), "--style-labels", "styles"])
    assert "invalid choice" in capsys.readouterr().err
