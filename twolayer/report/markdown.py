"""GitHub Markdown tables from pandas frames: the leaf every renderer of the report package uses."""

from __future__ import annotations

import numpy as np
import pandas as pd


def markdown_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    formats = formats or {}

    def cell(column: str, value: object) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return ""
        if column in formats:
            return formats[column].format(value)
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"
    lines = [header, rule]
    for record in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, record)) + " |")
    return "\n".join(lines)
