"""Reading catalogue folders: metadata.csv / metadata.json / bare images, and the rows that get rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from artsearch_tools.catalogue import (
    Catalogue,
    CatalogueEntry,
    CatalogueError,
    load_catalogue,
    write_metadata_csv,
)
from artsearch_tools.catalogue.folder import parse_year, slugify, write_catalogue_info


def make_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path)
    return path


def write_csv(folder: Path, text: str) -> None:
    (folder / "metadata.csv").write_text(text.lstrip(), encoding="utf-8")


def by_id(catalogue: Catalogue) -> dict[str, CatalogueEntry]:
    return {entry.id: entry for entry in catalogue.entries}


def test_csv_with_every_known_column_and_extras(tmp_path):
    make_image(tmp_path / "wave.jpg")
    make_image(tmp_path / "sub" / "mona.png")
    write_csv(
        tmp_path,
        """
id,filename,title,artist,style,genre,year,museum,source
great-wave,wave.jpg,The Great Wave off Kanagawa,Katsushika Hokusai,Ukiyo-e,marina,1831,The Met,Debian
,sub/mona.png,Mona Lisa,Leonardo da Vinci,High Renaissance,portrait,,Louvre,
""",
    )

    catalogue = load_catalogue(tmp_path)

    assert catalogue.problems == []
    assert catalogue.name == tmp_path.name
    assert catalogue.root == tmp_path
    entries = by_id(catalogue)
    assert entries["great-wave"] == CatalogueEntry(
        id="great-wave",
        filename="wave.jpg",
        title="The Great Wave off Kanagawa",
        artist="Katsushika Hokusai",
        style="Ukiyo-e",
        genre="marina",
        year=1831,
        extra={"museum": "The Met", "source": "Debian"},
    )
    mona = entries["mona"]  # id derived from the file-name stem
    assert mona.filename == "sub/mona.png"
    assert mona.year is None
    assert mona.extra == {"museum": "Louvre", "source": ""}
    assert catalogue.path_of(mona) == tmp_path / "sub" / "mona.png"


def test_name_can_be_given(tmp_path):
    make_image(tmp_path / "a.jpg")
    assert load_catalogue(tmp_path, name="demo").name == "demo"


@pytest.mark.parametrize("column", ["file", "image", "path", "FileName"])
def test_alternative_filename_columns(tmp_path, column):
    make_image(tmp_path / "Starry Night (1889).jpg")
    write_csv(tmp_path, f"{column},title\nStarry Night (1889).jpg,The Starry Night\n")

    catalogue = load_catalogue(tmp_path)

    assert [(entry.id, entry.title) for entry in catalogue.entries] == [
        ("starry-night-1889", "The Starry Night")
    ]


def test_seed_wikiart_layout_with_date_column(tmp_path):
    make_image(tmp_path / "Post_Impressionism" / "vincent-van-gogh_the-starry-night-1889.jpg")
    make_image(tmp_path / "High_Renaissance" / "leonardo-da-vinci_mona-lisa.jpg")
    make_image(tmp_path / "Ukiyo_e" / "hokusai_great-wave.jpg")
    write_csv(
        tmp_path,
        """
filename,artist,title,style,genre,date
Post_Impressionism/vincent-van-gogh_the-starry-night-1889.jpg,vincent-van-gogh,the-starry-night,Post_Impressionism,landscape,1889
High_Renaissance/leonardo-da-vinci_mona-lisa.jpg,leonardo-da-vinci,mona-lisa,High_Renaissance,portrait,c. 1503
Ukiyo_e/hokusai_great-wave.jpg,katsushika-hokusai,great-wave,Ukiyo_e,marina,1830-1832
""",
    )

    catalogue = load_catalogue(tmp_path)

    assert catalogue.problems == []
    years = {entry.id: entry.year for entry in catalogue.entries}
    assert years == {
        "vincent-van-gogh-the-starry-night-1889": 1889,
        "leonardo-da-vinci-mona-lisa": 1503,
        "hokusai-great-wave": 1830,
    }
    assert {entry.style for entry in catalogue.entries} == {
        "Post_Impressionism",
        "High_Renaissance",
        "Ukiyo_e",
    }
    assert all(entry.extra == {} for entry in catalogue.entries)


def test_bad_rows_are_reported_and_the_rest_still_load(tmp_path):
    make_image(tmp_path / "good.jpg")
    make_image(tmp_path / "twin.jpg")
    make_image(tmp_path / "when.jpg")
    write_csv(
        tmp_path,
        """
id,filename,title,year
good,good.jpg,Good,1900
missing,nowhere.jpg,Missing,1900
good,twin.jpg,Same id as the first,1901
,,No file name,
when,when.jpg,Bad year,sometime
escape,../outside.jpg,Outside the folder,
absolute,/etc/passwd,Absolute path,
""",
    )

    catalogue = load_catalogue(tmp_path)

    assert [entry.id for entry in catalogue.entries] == ["good"]
    reasons = {problem.row: (problem.filename, problem.reason) for problem in catalogue.problems}
    assert reasons[2] == ("nowhere.jpg", "file not found")
    assert reasons[3] == ("twin.jpg", "duplicate id 'good'")
    assert reasons[4] == ("", "no file name")
    assert reasons[5][1] == "bad year 'sometime'"
    assert "relative path" in reasons[6][1]
    assert "relative path" in reasons[7][1]
    assert len(catalogue.problems) == 6


def test_json_metadata_list_of_objects(tmp_path):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "b.png")
    document = [
        {"image": "a.png", "title": "A", "artist": "Mary Cassatt", "year": 1894, "tags": ["boat", "lake"]},
        {"file": "b.png", "id": "bee", "date": "c. 1503", "museum": None, "rating": 4.5},
        "not an object",
        {"filename": "a.png", "id": "a", "title": "duplicate"},
    ]
    (tmp_path / "metadata.json").write_text(json.dumps(document), encoding="utf-8")

    catalogue = load_catalogue(tmp_path)

    entries = by_id(catalogue)
    assert set(entries) == {"a", "bee"}
    assert entries["a"].year == 1894
    assert entries["a"].artist == "Mary Cassatt"
    assert entries["a"].extra == {"tags": '["boat", "lake"]'}
    assert entries["bee"].year == 1503
    assert entries["bee"].title == "b"
    assert entries["bee"].extra == {"museum": "", "rating": "4.5"}
    assert [(problem.row, problem.reason) for problem in catalogue.problems] == [
        (3, "no file name"),
        (4, "duplicate id 'a'"),
    ]


def test_folder_without_metadata_lists_every_image(tmp_path):
    make_image(tmp_path / "Sunflowers.jpg")
    make_image(tmp_path / "nested" / "Irises.PNG")
    make_image(tmp_path / ".hidden" / "secret.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    # A phone's photos and AVIF: by their names here; their bytes are checked when ingested.
    (tmp_path / "IMG_0042.HEIC").write_bytes(b"\x00")
    (tmp_path / "wheatfield.avif").write_bytes(b"\x00")

    catalogue = load_catalogue(tmp_path)

    assert sorted((entry.id, entry.filename, entry.title) for entry in catalogue.entries) == [
        ("img-0042", "IMG_0042.HEIC", "IMG_0042"),
        ("irises", "nested/Irises.PNG", "Irises"),
        ("sunflowers", "Sunflowers.jpg", "Sunflowers"),
        ("wheatfield", "wheatfield.avif", "wheatfield"),
    ]
    assert catalogue.problems == []


def test_bare_images_with_clashing_ids_are_reported(tmp_path):
    make_image(tmp_path / "Water Lilies.jpg")
    make_image(tmp_path / "water-lilies.png")

    catalogue = load_catalogue(tmp_path)

    assert len(catalogue.entries) == 1
    assert len(catalogue.problems) == 1
    assert catalogue.problems[0].row is None
    assert catalogue.problems[0].reason == "duplicate id 'water-lilies'"


def test_csv_prefers_csv_over_json_and_tolerates_a_bom(tmp_path):
    make_image(tmp_path / "a.jpg")
    (tmp_path / "metadata.csv").write_text("\ufefffilename,title\na.jpg,From CSV\n", encoding="utf-8")
    (tmp_path / "metadata.json").write_text('[{"filename": "a.jpg", "title": "From JSON"}]')

    assert [entry.title for entry in load_catalogue(tmp_path).entries] == ["From CSV"]


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("metadata.csv", "title,artist\nA,B\n", "no image column"),
        ("metadata.json", "{not json", "not valid JSON"),
        ("metadata.json", '{"filename": "a.jpg"}', "expected a JSON list"),
    ],
)
def test_unreadable_metadata_files_raise(tmp_path, filename, content, message):
    (tmp_path / filename).write_text(content)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(tmp_path)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(CatalogueError, match="does not exist"):
        load_catalogue(tmp_path / "nope")


def test_write_metadata_csv_round_trips(tmp_path):
    make_image(tmp_path / "pieta.jpg")
    make_image(tmp_path / "wave.jpg")
    entries = [
        CatalogueEntry(
            "michelangelo-pieta",
            "pieta.jpg",
            "Pietà",
            "Michelangelo Buonarroti",
            "High Renaissance",
            "sculpture",
            1499,
            {"source": "Debian, a, b", "license": "public domain"},
        ),
        CatalogueEntry(
            "hokusai-wave",
            "wave.jpg",
            'The "Great" Wave',
            "Katsushika Hokusai",
            "Ukiyo-e",
            "marina",
            None,
            {"source": "x"},
        ),
    ]
    write_metadata_csv(tmp_path / "metadata.csv", entries, extra_columns=("source", "license"))

    header = (tmp_path / "metadata.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "id,filename,title,artist,year,style,genre,source,license"
    loaded = load_catalogue(tmp_path).entries
    assert loaded[0] == entries[0]
    assert loaded[1] == CatalogueEntry(
        "hokusai-wave",
        "wave.jpg",
        'The "Great" Wave',
        "Katsushika Hokusai",
        "Ukiyo-e",
        "marina",
        None,
        {"source": "x", "license": ""},
    )


@pytest.mark.parametrize(
    ("value", "year"),
    [
        ("1889", 1889),
        (1889, 1889),
        ("c. 1503", 1503),
        ("1503-19", 1503),
        ("ca.1650s", 1650),
        ("", None),
        ("Unknown", None),
        (None, None),
        ("  n.d. ", None),
    ],
)
def test_parse_year(value, year):
    assert parse_year(value) == year


@pytest.mark.parametrize("value", ["sometime", "19th century", "12"])
def test_parse_year_rejects_text_without_a_year(value):
    with pytest.raises(ValueError):
        parse_year(value)


def test_slugify():
    assert slugify("Café Terrace at Night") == "cafe-terrace-at-night"
    assert slugify("  Pietà (1499) ") == "pieta-1499"
    assert slugify("Dürer_Lion") == "durer-lion"


# --- what the style labels are -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["art", "category"])
def test_catalogue_json_declares_what_the_style_labels_are(tmp_path, kind):
    make_image(tmp_path / "a.png")
    write_catalogue_info(tmp_path, kind)
    assert json.loads((tmp_path / "catalogue.json").read_text()) == {"style_labels": kind}
    catalogue = load_catalogue(tmp_path)
    assert catalogue.style_labels == kind
    # The declaration file is not an image nor a metadata file: the folder still lists its one image.
    assert [entry.filename for entry in catalogue.entries] == ["a.png"]


def test_without_a_declaration_the_kind_is_unknown(tmp_path):
    make_image(tmp_path / "a.png")
    assert load_catalogue(tmp_path).style_labels is None
    (tmp_path / "catalogue.json").write_text('{"licence": "CC0"}')
    assert load_catalogue(tmp_path).style_labels is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"style_labels": "styles"}', "style_labels must be one of art, category"),
        ('{"style_labels": 1}', "style_labels must be one of art, category"),
        ("[]", "expected a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_declaration_stops_the_load(tmp_path, content, message):
    make_image(tmp_path / "a.png")
    (tmp_path / "catalogue.json").write_text(content)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(tmp_path)
    with pytest.raises(CatalogueError, match="style_labels must be one of"):
        write_catalogue_info(tmp_path, "painting")
