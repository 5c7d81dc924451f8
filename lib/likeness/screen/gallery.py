"""The watchlist, its population, and the gallery search that picks candidate persons.

A screening scores a track against a person (LR and lineup, :mod:`likeness.screen.scoring`)
only when the person is among the track's ``n_candidates`` best watchlisted persons by the
gallery search: the gallery score of a track against a person is the same declared rule as
the case score (quality-weighted mean over the track's faces of the top-k mean cosine
similarity to the person's photos). A person outside the gallery's top ``n_candidates`` has at
least ``n_candidates`` watchlisted persons scoring higher, so cannot reach a lineup rank within
the flag rule (``flag_max_rank <= n_candidates``, checked by ScreenParams).

Search:

* **exact** (watchlists of at most ``index_above_persons`` persons): every face against every
  watchlist photo (matrix products, :func:`likeness.scores.identity_score_matrix`);
* **index** (larger watchlists): a FAISS HNSW index (inner product on L2-normalised
  embeddings = cosine) of every watchlist photo returns each face's ``search_k`` nearest
  photos; the persons of those photos are the only ones scored exactly as above. The index is
  built single-threaded (FAISS builds HNSW graphs with several threads non-deterministically),
  so every worker holds the same graph.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from likeness import embeddings
from likeness import scores as sc
from likeness.case import population_photos
from likeness.errors import CaseError

# HNSW graph degree and search breadth: FAISS's usual values for 512-d vectors; recall of the
# true nearest photos is checked against exact search by the tests on the shared data.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256


def embed_watchlist(root: Path, *, max_per_person: int, **embed_kwargs: Any) -> pd.DataFrame:
    """Embed the watchlist folder (one sub-folder of reference photos per person).

    Like a claimant's references: the dominant face of each photo (``embed_photos``
    selection 'dominant'), at most ``max_per_person`` photos per person (sorted by name).
    Returns the ``embed_photos`` table plus ``identity``. Raises CaseError when the folder
    holds no person with a usable photo.
    """
    root = Path(root)
    if not root.is_dir():
        raise CaseError(f"--watchlist {root}: not a folder; give a folder with one sub-folder "
                        "of reference photos per person")
    listing = population_photos(root, max_per_identity=max_per_person)
    listing = listing[listing["path"].notna()]
    if listing.empty:
        raise CaseError(f"--watchlist {root}: no photo found; add one sub-folder of reference "
                        "photos per person")
    photos = embeddings.embed_photos(
        listing["path"].tolist(), selection="dominant", **embed_kwargs
    )
    photos.insert(0, "identity", listing["identity"].to_numpy())
    if not (photos["status"] == "ok").any():
        raise CaseError(f"--watchlist {root}: no face found in any photo")
    return photos.sort_values(["identity", "path"], kind="stable", ignore_index=True)


@dataclasses.dataclass
class Gallery:
    """The watchlist's usable photos and, above the declared size, their FAISS index."""

    persons: list[str]
    photos: pd.DataFrame  # usable watchlist photos: identity, path, embedding, ...
    photo_person: np.ndarray  # (n_photos,) index into persons of each photo
    index_bytes: np.ndarray | None  # faiss.serialize_index of the HNSW index, or None
    search_k: int
    _index: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def uses_index(self) -> bool:
        return self.index_bytes is not None

    def index(self):
        """The FAISS index (deserialised once per process: workers receive the bytes)."""
        if self._index is None and self.index_bytes is not None:
            import faiss

            self._index = faiss.deserialize_index(self.index_bytes)
            self._index.hnsw.efSearch = HNSW_EF_SEARCH
        return self._index

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_index"] = None  # FAISS objects do not pickle; the bytes travel instead
        return state


def build_gallery(watchlist: pd.DataFrame, *, use_index: bool, search_k: int) -> Gallery:
    """The gallery of a watchlist table (:func:`embed_watchlist`)."""
    photos = sc.usable_photos(watchlist).sort_values(["identity", "path"], kind="stable")
    photos = photos.reset_index(drop=True)
    persons = sorted(photos["identity"].unique().tolist())
    codes = pd.Categorical(photos["identity"], categories=persons).codes.astype(np.int64)
    index_bytes = None
    if use_index:
        import faiss

        vectors = sc.embedding_matrix(photos["embedding"]).astype(np.float32)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(threads)
        index_bytes = faiss.serialize_index(index)
    return Gallery(persons, photos, codes, index_bytes, int(search_k))


def _searched_persons(gallery: Gallery, emb: np.ndarray) -> list[str]:
    """Persons owning any of the ``search_k`` nearest photos of any face (index search)."""
    _, ids = gallery.index().search(np.ascontiguousarray(emb, dtype=np.float32),
                                    min(gallery.search_k, len(gallery.photos)))
    found = np.unique(gallery.photo_person[ids[ids >= 0]])
    return [gallery.persons[i] for i in found]


def candidates(
    gallery: Gallery, faces: pd.DataFrame, *, top_k: int, n_candidates: int
) -> pd.DataFrame:
    """The ``n_candidates`` best watchlisted persons of each track of a faces table.

    Returns columns ``track_id``, ``person``, ``gallery_score``, ``gallery_rank`` (1 = best
    person of the track), sorted by track then rank; ties go to the person whose name sorts
    first.
    """
    columns = ["track_id", "person", "gallery_score", "gallery_rank"]
    if faces.empty:
        return pd.DataFrame({c: [] for c in columns})
    faces = faces.iloc[sc.track_order(faces)]
    emb = sc.embedding_matrix(faces["embedding"])
    persons = _searched_persons(gallery, emb) if gallery.uses_index else gallery.persons
    photos = gallery.photos[gallery.photos["identity"].isin(persons)]
    matrix, names = sc.identity_score_matrix(emb, photos, top_k)
    weights = sc.quality_weights(faces["quality"])
    tracks, track_matrix = sc.track_weighted_mean(faces["track_id"], weights, matrix)
    n = min(int(n_candidates), len(names))
    order = np.argsort(-track_matrix, axis=1, kind="stable")[:, :n]
    rows = len(tracks) * n
    return pd.DataFrame({
        "track_id": np.repeat(tracks.astype(np.int64), n),
        "person": np.asarray(names, dtype=object)[order].reshape(rows),
        "gallery_score": np.take_along_axis(track_matrix, order, axis=1).reshape(rows),
        "gallery_rank": np.tile(np.arange(1, n + 1, dtype=np.int64), len(tracks)),
    })[columns]
