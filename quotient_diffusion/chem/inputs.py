"""Molecules to embed: one SMILES, or a file of them, read by a rule that never guesses.

With ``kind="auto"`` an argument is read as a file only when it ends in ``.smi``, ``.txt``,
``.csv`` or ``.sdf`` (any case), or is ``-`` (standard input, read as ``.smi``); anything else
is a SMILES string, even when a file of that name exists. ``kind`` may also name the format:
``smiles`` (the argument itself), ``smi``, ``csv`` or ``sdf`` (a file of any name, or ``-``).

* ``smi`` (also ``.txt``): one molecule per line, the SMILES, then whitespace, then an optional
  name, which is the rest of the line (it may hold spaces). Blank lines and lines starting with
  ``#`` are skipped, and so is a first line whose first word is ``smiles`` (a header).
* ``csv``: read with the :mod:`csv` module, so quoted fields may hold commas and spaces. When
  the first row has a column named ``smiles`` (any case) it is a header: the SMILES come from
  that column and the names from a column named ``name``, ``id`` or ``title`` if there is one.
  Without a header, the first column is the SMILES and the second, if any, the name.
* ``sdf``: every record is read by RDKit (its stereo from the coordinates or the parity flags)
  and written as a canonical isomeric SMILES; its title line is the name.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InputRecord", "FORMATS", "input_format", "read_inputs", "parse_smi", "parse_csv",
           "parse_sdf"]

FORMATS = ("auto", "smiles", "smi", "csv", "sdf")
_EXTENSIONS = {".smi": "smi", ".txt": "smi", ".csv": "csv", ".sdf": "sdf"}
_NAME_COLUMNS = ("name", "id", "title")
STDIN = "-"


@dataclass(frozen=True)
class InputRecord:
    """One input molecule: where it came from (line or record ``number``, from 1), its SMILES
    (None when the record could not be read, with ``error`` saying why) and its name."""

    number: int
    smiles: str | None
    name: str
    error: str | None = None


def input_format(argument: str, kind: str = "auto") -> str:
    """The format ``argument`` is read in: ``smiles``, ``smi``, ``csv`` or ``sdf``."""
    if kind not in FORMATS:
        raise ValueError(f"unknown input format {kind!r}; choose one of {', '.join(FORMATS)}")
    if kind != "auto":
        return kind
    if argument == STDIN:
        return "smi"
    return _EXTENSIONS.get(Path(argument).suffix.lower(), "smiles")


def _is_header(first_word: str) -> bool:
    return first_word.lower() in ("smiles", "smi")


def parse_smi(lines: Iterable[str]) -> list[InputRecord]:
    """Records of a ``.smi`` text (see the module docstring)."""
    records = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        smiles, *rest = text.split(maxsplit=1)
        name = rest[0].strip() if rest else ""
        if not records and number == 1 and _is_header(smiles):
            continue
        records.append(InputRecord(number, smiles, name or smiles))
    return records


def _columns(header: list[str]) -> tuple[int, int | None]:
    lowered = [h.strip().lower() for h in header]
    names = [lowered.index(n) for n in _NAME_COLUMNS if n in lowered]
    return lowered.index("smiles"), (names[0] if names else None)


def parse_csv(lines: Iterable[str]) -> list[InputRecord]:
    """Records of a CSV text (see the module docstring)."""
    reader = csv.reader(lines)
    records: list[InputRecord] = []
    smiles_col, name_col, seen_row = 0, 1, False
    for row in reader:
        if not any(field.strip() for field in row) or row[0].lstrip().startswith("#"):
            continue
        if not seen_row:
            seen_row = True
            if any(field.strip().lower() == "smiles" for field in row):
                smiles_col, name_col = _columns(row)
                continue
        smiles = row[smiles_col].strip() if smiles_col < len(row) else ""
        name = row[name_col].strip() if name_col is not None and name_col < len(row) else ""
        if not smiles:
            records.append(InputRecord(reader.line_num, None, name, "no SMILES in this row"))
            continue
        records.append(InputRecord(reader.line_num, smiles, name or smiles))
    return records


def parse_sdf(text: str) -> list[InputRecord]:
    """Records of an SDF text, each as a canonical isomeric SMILES."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    supplier = Chem.SDMolSupplier()
    supplier.SetData(text, removeHs=False)
    records = []
    for number, mol in enumerate(supplier, start=1):
        if mol is None:
            records.append(InputRecord(number, None, "", f"cannot read SDF record {number}"))
            continue
        name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
        records.append(InputRecord(number, smiles, name or smiles))
    return records


def _read_text(argument: str) -> str:
    if argument == STDIN:
        return sys.stdin.read()
    path = Path(argument)
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {argument}")
    return path.read_text()


def read_inputs(argument: str, kind: str = "auto") -> tuple[str, list[InputRecord]]:
    """(format used, records) for a command-line argument read as ``kind`` (see
    :func:`input_format`); ``FileNotFoundError`` for a missing file, ``UnicodeDecodeError`` for
    a binary one."""
    kind = input_format(argument, kind)
    if kind == "smiles":
        return kind, [InputRecord(1, argument.strip(), argument.strip())]
    text = _read_text(argument)
    if kind == "sdf":
        return kind, parse_sdf(text)
    lines = text.splitlines()
    return kind, (parse_csv(lines) if kind == "csv" else parse_smi(lines))
