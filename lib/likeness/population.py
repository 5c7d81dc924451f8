"""The population, described: who stands for "another person" of proposition H2.

A population folder holds one sub-folder per identity (see
:func:`likeness.case.population_photos`) and, optionally, a ``population.csv`` describing the
identities::

    identity,sex,age_band,ethnicity,occupation
    Aaron_Peirsol,male,20-29,White,athlete

``identity`` is required and names a sub-folder; the other columns are optional and free text
(``ATTRIBUTES``). ``describe_population`` counts identities, photos per identity, photo sizes
and, when the file is there, the identities per attribute value; ``matching_identities``
counts the identities that share every attribute declared for the claimant, which tells
whether the population represents people like the claimant at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from likeness.case import population_photos
from likeness.errors import PopulationError
from likeness.provenance import ATTRIBUTES

ATTRIBUTES_FILE = "population.csv"


def read_attributes(root: str | os.PathLike[str]) -> pd.DataFrame | None:
    """``population.csv`` of a population folder (None when absent); values are stripped text,
    an empty cell is NaN. Unknown columns, a missing ``identity`` column and repeated
    identities are errors that name the file."""
    path = Path(root) / ATTRIBUTES_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise PopulationError(f"{path}: not a readable CSV file: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    if "identity" not in table.columns:
        raise PopulationError(f"{path}: no 'identity' column; the first line must name the "
                              f"columns: identity, {', '.join(ATTRIBUTES)}")
    unknown = [c for c in table.columns if c != "identity" and c not in ATTRIBUTES]
    if unknown:
        raise PopulationError(f"{path}: unknown column '{unknown[0]}'; allowed: identity, "
                              + ", ".join(ATTRIBUTES))
    table = table.apply(lambda col: col.str.strip())
    repeated = table["identity"][table["identity"].duplicated()]
    if len(repeated):
        raise PopulationError(f"{path}: identity '{repeated.iloc[0]}' is described twice; "
                              "keep one line per identity")
    return table.reindex(columns=["identity", *ATTRIBUTES]).astype(object)


def photo_size(path: Path) -> tuple[int, int]:
    """Width and height of a photo from its header (the pixels are not decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except OSError:
        return (0, 0)


def identity_table(
    root: str | os.PathLike[str], exclude: tuple[str, ...] = (), *,
    max_per_identity: int | None = None,
) -> pd.DataFrame:
    """One row per identity: photos, bytes, median width and height, and its attributes
    (empty when ``population.csv`` is absent or does not describe it)."""
    root = Path(root)
    if not root.is_dir():
        raise PopulationError(f"{root}: not a folder; a population is a folder with one "
                              "sub-folder of photos per identity")
    photos = population_photos(root, exclude, max_per_identity=max_per_identity)
    photos = photos.dropna(subset=["path"])
    sizes = [photo_size(Path(p)) for p in photos["path"]]
    photos = photos.assign(
        bytes=[Path(p).stat().st_size for p in photos["path"]],
        width=[s[0] for s in sizes], height=[s[1] for s in sizes],
    )
    grouped = photos.groupby("identity", sort=True)
    table = pd.DataFrame({
        "identity": grouped.size().index,
        "photos": grouped.size().to_numpy(),
        "bytes": grouped["bytes"].sum().to_numpy(),
        "median width": grouped["width"].median().to_numpy(),
        "median height": grouped["height"].median().to_numpy(),
    })
    attributes = read_attributes(root)
    if attributes is None:
        attributes = pd.DataFrame(columns=["identity", *ATTRIBUTES])
    return table.merge(attributes, on="identity", how="left", validate="one_to_one")


def describe_population(
    root: str | os.PathLike[str], exclude: tuple[str, ...] = (), *,
    max_per_identity: int | None = None,
) -> dict[str, pd.DataFrame]:
    """A population in tables: ``summary`` (quantity, value), ``attributes`` (attribute,
    value, identities, photos; described identities only) and ``identities`` (one row each)."""
    identities = identity_table(root, exclude, max_per_identity=max_per_identity)
    per = identities["photos"]
    described = identities.dropna(subset=list(ATTRIBUTES), how="all")
    has_file = (Path(root) / ATTRIBUTES_FILE).is_file()
    summary = [
        ("folder", str(Path(root).resolve())),
        ("identities", len(identities)),
        ("photos", int(per.sum())),
        ("photos per identity, min / median / max",
         f"{int(per.min())} / {per.median():g} / {int(per.max())}" if len(per) else "–"),
        ("photo size (pixels), median width x height",
         f"{identities['median width'].median():g} x {identities['median height'].median():g}"
         if len(per) else "–"),
        ("bytes in all", int(identities["bytes"].sum())),
        ("population.csv", "present" if has_file else "absent: no attributes recorded"),
        ("identities described in population.csv", len(described)),
    ]
    rows = []
    for attribute in ATTRIBUTES:
        values = described[attribute].astype(object).fillna("not recorded")
        for value, group in described.groupby(values, sort=True):
            rows.append({"attribute": attribute, "value": value,
                         "identities": len(group), "photos": int(group["photos"].sum())})
    return {
        "summary": pd.DataFrame([(k, str(v)) for k, v in summary], columns=["quantity", "value"]),
        "attributes": pd.DataFrame(rows, columns=["attribute", "value", "identities", "photos"]),
        "identities": identities,
    }


def matching_identities(identities: pd.DataFrame, declared: Mapping[str, str]) -> int | None:
    """How many identities share every declared attribute (case-insensitive); None when no
    attribute is declared or the population does not record a declared attribute at all."""
    if not declared:
        return None
    mask = pd.Series(True, index=identities.index)
    for attribute, value in declared.items():
        column = identities.get(attribute)
        if column is None or column.isna().all():
            return None
        mask &= column.fillna("").str.casefold() == str(value).strip().casefold()
    return int(mask.sum())
