"""The faces table of an episode: its columns and where it lives in a run folder.

``faces/<episode>.parquet`` holds one row per detected face (``FACE_SCHEMA``): where and when
it is, MTCNN's probability and landmarks, the quality measures, the track it belongs to and its
embedding. :mod:`likeness.analysis` writes it; the results, the report and the screening read
it. Reading it needs neither torch nor the models (a notebook's kernel starts without them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from likeness import scores as sc

FACES_DIR = "faces"


_FACE_COLUMNS = (
    ("episode", pa.string()),
    ("frame_index", pa.int64()),
    ("time_s", pa.float64()),
    ("box_x1", pa.float32()),
    ("box_y1", pa.float32()),
    ("box_x2", pa.float32()),
    ("box_y2", pa.float32()),
    ("prob", pa.float32()),
    ("landmarks", pa.list_(pa.float32(), 10)),
    ("face_px", pa.float32()),
    ("sharpness", pa.float32()),
    ("yaw", pa.float32()),
    ("pitch", pa.float32()),
    ("roll", pa.float32()),
    ("quality", pa.float32()),
    ("track_id", pa.int64()),
)


def face_schema(embedding_dim: int = 512) -> pa.Schema:
    """Columns of a faces table; the embedding's length is the model's (512 FaceNet, 128 dlib)."""
    return pa.schema([*_FACE_COLUMNS, ("embedding", pa.list_(pa.float32(), embedding_dim))])


# The default model's faces table (the column names are the same for every model).
FACE_SCHEMA = face_schema(512)


def faces_path(run_dir: Path, episode_id: str) -> Path:
    return Path(run_dir) / FACES_DIR / f"{episode_id}.parquet"


def read_faces(run_dir: Path, episode_id: str, *, embeddings: bool = True) -> pd.DataFrame:
    """The faces table of one episode (raises FileNotFoundError when it was not made).

    ``embeddings=False`` leaves out the embedding vectors, for tables and figures that do not need
    them (they are most of the file).
    """
    columns = None if embeddings else [c for c in FACE_SCHEMA.names if c != "embedding"]
    return pq.read_table(faces_path(run_dir, episode_id), columns=columns).to_pandas()


def read_episode_faces(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A faces table without its embeddings, and the embeddings as one L2-normalised float32
    (faces, d) matrix in the table's row order (not a Python object per face: a long episode
    is scored in about the memory its embeddings take on disk)."""
    table = pq.read_table(path)
    emb = sc.embedding_matrix(table.column("embedding"))
    return table.drop_columns(["embedding"]).to_pandas(), emb
