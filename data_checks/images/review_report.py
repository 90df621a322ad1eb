"""The label review list as HTML with thumbnails, for a person who decides what to relabel."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import cv2
import pandas as pd


def _thumbnail(path: str, height: int = 96) -> str:
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        return ""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    ok, encoded = cv2.imencode(".jpg", cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(encoded).decode()}">' if ok else ""


def write_review_html(table: pd.DataFrame, path: Path, items: int, title: str) -> Path:
    """The first `items` rows of a ranked review table, one row per image with its thumbnail."""
    head = table.head(items)
    columns = [c for c in head.columns if c != "path"]
    rows = []
    for record in head.to_dict("records"):
        cells = "".join(
            f"<td>{html.escape(f'{record[c]:.3f}' if isinstance(record[c], float) else str(record[c]))}</td>"
            for c in columns
        )
        rows.append(
            f"<tr><td>{_thumbnail(record['path'])}<br><small>{html.escape(record['path'])}</small></td>{cells}</tr>"
        )
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ["image", *columns])
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h2>{html.escape(title)}</h2><p>{len(table)} items ranked, first {len(head)} shown; the CSV holds all.</p>"
        f"<table><tr>{header}</tr>{''.join(rows)}</table></body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
