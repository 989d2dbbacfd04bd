"""Prediction rows to JSON lines, CSV or Parquet, chosen by the output file's extension.

One row per image file, in the job's file order:

* JSON lines (``.jsonl``): ``{"image": PATH, "label": L, "confidence": P, "top": [{"class": C,
  "probability": P}, ...]}`` (exactly the lines of ``cvcore predict --json``; ``label`` is
  ``"unknown"`` below ``--min-confidence``), or ``{"image": PATH, "error": WHY}``.
* CSV (``.csv``, RFC 4180 quoting): columns ``image, error, label, confidence, class_1,
  probability_1, ..., class_k, probability_k``; a bad file has its ``error`` filled and the rest
  empty.
* Parquet (``.parquet``, needs ``pyarrow``): the CSV's columns, typed (strings, float64,
  nulls where empty), one row group per partition.

Probabilities are written with Python's shortest round-tripping ``repr``, so reading them back
gives the same float64.
"""
from __future__ import annotations

import csv
import json
import os

from cvcore.io.atomic import atomic_write

__all__ = ["OUTPUT_FORMATS", "output_format", "csv_header", "row_to_flat", "write_rows"]

OUTPUT_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def output_format(path) -> str:
    """``"jsonl"``, ``"csv"`` or ``"parquet"`` from ``path``'s extension; ValueError otherwise
    (or for Parquet without pyarrow)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = OUTPUT_FORMATS.get(ext)
    if fmt is None:
        raise ValueError(f"--out {path}: the extension {ext or '(none)'!r} names no output "
                         f"format; use .jsonl, .csv or .parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError(f"--out {path}: Parquet needs pyarrow (pip install pyarrow), or "
                             f"write .jsonl or .csv") from None
    return fmt


def csv_header(k: int) -> list[str]:
    """The CSV (and Parquet) columns for ``k`` classes per row.

    >>> csv_header(2)  # doctest: +NORMALIZE_WHITESPACE
    ['image', 'error', 'label', 'confidence', 'class_1', 'probability_1', 'class_2',
     'probability_2']
    """
    cols = ["image", "error", "label", "confidence"]
    for j in range(1, k + 1):
        cols += [f"class_{j}", f"probability_{j}"]
    return cols


def row_to_flat(row: dict, k: int) -> list:
    """A row as the list of :func:`csv_header`'s columns (None where empty)."""
    flat = [row["image"], row.get("error"), row.get("label"), row.get("confidence")]
    top = row.get("top", [])
    for j in range(k):
        flat += [top[j]["class"], top[j]["probability"]] if j < len(top) else [None, None]
    return flat


def _read_piece(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def write_rows(out, pieces, k: int) -> None:
    """Join the JSON-lines ``pieces`` (paths, in order) into ``out`` in its format, atomically.

    Streams: one piece is in memory at a time.
    """
    fmt = output_format(out)
    if fmt == "jsonl":
        with atomic_write(out, "wb") as f:
            for piece in pieces:
                with open(piece, "rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        f.write(chunk)
    elif fmt == "csv":
        with atomic_write(out, "w") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(csv_header(k))
            for piece in pieces:
                for row in _read_piece(piece):
                    writer.writerow(["" if v is None else (repr(v) if isinstance(v, float)
                                                           else v)
                                     for v in row_to_flat(row, k)])
    else:
        _write_parquet(out, pieces, k)


def _write_parquet(out, pieces, k: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    names = csv_header(k)
    schema = pa.schema([(n, pa.float64() if n.startswith("probability_") or n == "confidence"
                         else pa.string()) for n in names])
    with atomic_write(out, "wb") as f:
        writer = pq.ParquetWriter(f, schema)
        try:
            for piece in pieces:
                columns = list(zip(*(row_to_flat(r, k) for r in _read_piece(piece)))) or \
                    [[] for _ in names]
                writer.write_table(pa.table({n: pa.array(list(c), type=schema.field(n).type)
                                             for n, c in zip(names, columns)}, schema=schema))
        finally:
            writer.close()
