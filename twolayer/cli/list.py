"""`twolayer list`: the variants, with their tutorial section, devices and dtype."""

from __future__ import annotations

import argparse
import unicodedata

from twolayer.variants import VARIANTS


def add_parser(commands) -> None:
    listing = commands.add_parser("list", help="list the variants")
    listing.set_defaults(handler=run)


def display_width(text: str) -> int:
    """Terminal columns taken by `text` (the section names are double-width CJK)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def run(args: argparse.Namespace) -> int:
    rows = [("name", "section", "origin", "devices", "default dtype", "what it is")]
    for info in VARIANTS.values():
        rows.append((info.name, info.section, info.origin, ",".join(info.devices), info.default_dtype, info.summary))
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths)]
        print("  ".join(cells) + "  " + row[-1])
    return 0
