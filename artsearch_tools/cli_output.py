"""What an `artsearch` command prints on stdout: its summary for people, or with `--json` one JSON document
for scripts (progress, logs and errors stay on stderr either way, so stdout parses as it is)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

JSON_HELP = "print one JSON document on stdout instead of the summary (progress and errors stay on stderr)"
# Commands with no result to print: `demo` serves until stopped.
WITHOUT_JSON = frozenset({"demo"})


def add_json_options(parser: argparse.ArgumentParser) -> None:
    """`--json` on every (sub)command of `parser` that prints a result and does not declare it itself."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, command in action.choices.items():
            if name in WITHOUT_JSON:
                continue
            if any(isinstance(sub, argparse._SubParsersAction) for sub in command._actions):
                add_json_options(command)
            elif "--json" not in command._option_string_actions:
                command.add_argument("--json", action="store_true", help=JSON_HELP)


def emit(args: argparse.Namespace, summary: str, document: Any) -> None:
    """`document` as JSON when the command was given `--json`, else the human `summary`."""
    if getattr(args, "json", False):
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False, default=_plain)
        sys.stdout.write("\n")
    else:
        print(summary)


def _plain(value: object) -> object:
    """The JSON form of what reports hold besides dicts, lists and scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
