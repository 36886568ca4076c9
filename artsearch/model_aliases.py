"""Model aliases: which collection holds the descriptors of which encoder model.

`model_alias("artworks", "57934424-g2-d1")` is `artworks__57934424-g2-d1`: an alias of the search service
that points at the collection encoded by that model. The gateway searches a query made by model V in
`model_alias(SEARCH_COLLECTION, V)` when that alias exists (else in SEARCH_COLLECTION), so while encoder pods
roll from one model to another each query meets descriptors of its own model. `artsearch ingest` records
`<collection>__<version>` when it fills a collection; `artsearch reindex` points `<alias>__<old version>` at
the old collection and `<alias>__<new version>` at the new one at the switch.

Collection and alias names are 1 to 64 of `A-Z a-z 0-9 _ -` (services/search/store.py COLLECTION_NAME, on
both engines), so '@' cannot separate them: the separator is `__`. A version is kept verbatim when it is made
of `A-Z a-z 0-9 - _` without `__` and without a leading or trailing `_`, and the name fits in 64 characters
(then the alias reads back to its version: `version_in`); otherwise the name is
`<alias, at most 40>__<version, cleaned and cut>__h<10 hex of sha256(alias, version)>`, which is
deterministic, within the limit, and never reads back as a version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from artsearch.v1 import search_pb2

SEPARATOR = "__"
MAX_NAME = 64  # services/search/store.py COLLECTION_NAME
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A version kept as it is: no "__" inside, no "_" at either end (so `<alias>__<version>` splits one way).
_VERBATIM = re.compile(r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*")
_OUTSIDE = re.compile(r"[^A-Za-z0-9-]+")
_HASHED_ALIAS_PART = 40
_DIGEST = 10


def model_alias(alias: str, model_version: str) -> str:
    """The alias naming the collection `alias` stands for, as encoded by model `model_version`.
    ValueError when `alias` is not a valid collection name or the version is empty."""
    if not NAME.fullmatch(alias):
        raise ValueError(f"{alias!r} is not a collection name (1 to {MAX_NAME} of A-Z a-z 0-9 _ -)")
    if not model_version:
        raise ValueError("the model version is empty")
    verbatim = f"{alias}{SEPARATOR}{model_version}"
    if _VERBATIM.fullmatch(model_version) and len(verbatim) <= MAX_NAME:
        return verbatim
    return _hashed(alias, model_version)


def _hashed(alias: str, model_version: str) -> str:
    digest = hashlib.sha256(f"{alias}\0{model_version}".encode()).hexdigest()[:_DIGEST]
    head = alias[:_HASHED_ALIAS_PART]
    room = MAX_NAME - len(head) - 2 * len(SEPARATOR) - 1 - _DIGEST
    version_part = _OUTSIDE.sub("-", model_version).strip("-")[:room] or "v"
    return f"{head}{SEPARATOR}{version_part}{SEPARATOR}h{digest}"


def version_in(name: str, alias: str) -> str | None:
    """The model version `name` is the model alias of (for `alias`), when it was kept verbatim; else None."""
    prefix = f"{alias}{SEPARATOR}"
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    version = name[len(prefix) :]
    try:
        return version if model_alias(alias, version) == name else None
    except ValueError:
        return None


def collection_versions(aliases: Mapping[str, str], collection: str, bases: Iterable[str]) -> set[str]:
    """The model versions recorded for `collection`: those of the model aliases (of any of `bases`) that
    point at it. `aliases` is ListAliases' alias -> collection."""
    names = [base for base in dict.fromkeys(bases) if base]
    versions = set()
    for name, target in aliases.items():
        if target != collection:
            continue
        for base in names:
            version = version_in(name, base)
            if version is not None:
                versions.add(version)
    return versions


def alias_map(listed: search_pb2.ListAliasesResponse) -> dict[str, str]:
    """alias -> collection, from a ListAliases answer."""
    return {alias.alias: alias.collection for alias in listed.aliases}


def resolved(aliases: Mapping[str, str], name: str) -> str:
    """The collection `name` stands for: through its alias if it is one (aliases never chain)."""
    return aliases.get(name, name)
