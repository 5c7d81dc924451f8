"""Similarity scores of faces against the claimant's references and the population.

The declared scoring rule, used identically for the questioned faces, the calibration data and
the lineup, so that the scores the calibrator learns from are the same kind of number as the
scores it is applied to:

* Similarity of two faces = cosine similarity of their L2-normalised embeddings (-1..1).
* Score of a face against a set of photos of one person = the mean of its ``k`` highest
  similarities to the photos of the set, ``k = min(top_k, number of photos)``. With one
  reference photo this is simply the similarity; with many it rewards a face that resembles
  several photos of the person rather than one lucky look-alike photo. The best single
  similarity is reported beside it (column ``best``) but is not what is calibrated.
* Score of a track (the same face followed over consecutive frames) = the quality-weighted mean
  of its faces' scores, weights = the face quality in [0, 1] from the faces table, floored at
  ``QUALITY_FLOOR`` so a track whose faces all have quality 0 still gets a score. A mean (not a
  maximum) is used because faces of one track are strongly dependent: their scores are repeated
  looks at one rendering, not independent evidence, and the maximum of many noisy looks is
  biased upwards. Being a weighted mean, a track's score always lies within the range of its
  faces' scores.
* Lineup: the claimant's rank among (population identities + claimant), ``N`` members. Every
  population identity is represented by as many photos as the claimant has references (chosen
  with a seeded RNG, see :func:`reference_sets`), so no member of the lineup has more chances to
  look like the face than the claimant. Rank 1 = the claimant scores highest; rank =
  1 + number of identities that score strictly higher.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

# Faces of quality 0 still count a little, so a track of poor faces is scored, not dropped.
QUALITY_FLOOR = 1e-3
# Rows of faces per block when scoring against the population: bounds memory to
# block x identities x photos-per-identity floats (~56 MB for 2048 x 172 x 20).
FACE_BLOCK = 2048


def embedding_matrix(embeddings: Sequence | pd.Series | np.ndarray | pa.ChunkedArray) -> np.ndarray:
    """Stack a column of embeddings (lists or arrays) into a float32 (n, d) matrix.

    A pyarrow column of fixed-size lists (a faces table's ``embedding`` read with pyarrow) is
    converted in one step, without a Python object per row: a long episode's embeddings then
    cost their 2 KB a face once, not again as pandas objects.

    The rows are L2-normalised again: the contract says they are already, and re-normalising a
    unit vector changes nothing, but a row that is not would make cosine similarities wrong
    silently. An empty input gives a (0, 512) matrix.
    """
    if isinstance(embeddings, pa.ChunkedArray | pa.Array):
        column = embeddings.combine_chunks() if isinstance(embeddings, pa.ChunkedArray) else (
            embeddings)
        if not len(column):
            return np.zeros((0, 512), dtype=np.float32)
        width = column.type.list_size
        matrix = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=True)
        matrix = matrix.reshape(len(column), width)
    elif isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
        matrix = embeddings.astype(np.float32, copy=True)
    else:
        rows = list(embeddings)
        if not rows:
            return np.zeros((0, 512), dtype=np.float32)
        matrix = np.stack([np.asarray(r, dtype=np.float32) for r in rows])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms > 0, norms, 1.0)
    return matrix


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities (n, m) of the rows of two L2-normalised matrices (n, d) and (m, d).

    Computed in float64: products of float32 values are exact in float64, so results differ
    between matrix shapes or BLAS thread counts only around 1e-16, far below the 6 decimals
    the result tables are written with (float32 sums differ around 1e-7).
    """
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T


def top_k_mean(similarities: np.ndarray, top_k: int) -> np.ndarray:
    """Mean of the ``min(top_k, m)`` largest values of each row of an (n, m) matrix."""
    m = similarities.shape[1]
    if m == 0:
        raise ValueError("top_k_mean: the set of photos is empty")
    k = min(int(top_k), m)
    # Full descending sort and a float64 sum in that order: the same arithmetic as
    # identity_score_matrix.
    top = -np.sort(-similarities, axis=1)[:, :k]
    return top.astype(np.float64).sum(axis=1) / k


def set_scores(faces: np.ndarray, photos: np.ndarray, top_k: int) -> pd.DataFrame:
    """Score each face (rows of ``faces``) against one set of photos (rows of ``photos``).

    Returns a DataFrame with one row per face: ``score`` (mean of the top-k similarities, the
    declared rule) and ``best`` (the highest single similarity).
    """
    if len(faces) == 0 or len(photos) == 0:
        # No face: an empty table. No usable reference: no score (NaN), never an error.
        return pd.DataFrame({"score": np.full(len(faces), np.nan),
                             "best": np.full(len(faces), np.nan)})
    sims = cosine_similarity(faces, photos)
    return pd.DataFrame({
        "score": top_k_mean(sims, top_k),
        "best": sims.max(axis=1),
    })


def usable_photos(photos: pd.DataFrame) -> pd.DataFrame:
    """The rows of an ``embed_photos`` table whose face was found (status 'ok', an embedding)."""
    if "embedding" not in photos.columns or photos.empty:
        return pd.DataFrame({"identity": [], "path": [], "status": [], "embedding": []})
    ok = photos["embedding"].notna()
    if "status" in photos.columns:
        ok &= photos["status"].eq("ok")
    return photos.loc[ok]


def reference_sets(population: pd.DataFrame, n_photos: int | None, seed: int) -> pd.DataFrame:
    """Choose, per population identity, the photos that stand for it in a lineup.

    Each identity keeps ``min(n_photos, its usable photos)`` photos drawn without replacement
    by a RNG seeded with ``seed`` (identities are visited in sorted order, so the choice is
    reproducible); ``n_photos=None`` keeps every photo. Matching ``n_photos`` to the number of
    claimant references makes the lineup fair (see the module docstring). Returns the chosen
    rows, sorted by identity then path.
    """
    photos = usable_photos(population).sort_values(["identity", "path"], kind="stable")
    if n_photos is None:
        return photos.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    positions = np.arange(len(photos))
    for _, idx in photos.groupby("identity", sort=True).indices.items():
        chosen = rng.permutation(positions[idx])[: int(n_photos)]
        keep += sorted(chosen.tolist())
    return photos.iloc[sorted(keep)].reset_index(drop=True)


def identity_score_blocks(
    faces: np.ndarray, population: pd.DataFrame, top_k: int
) -> tuple[list[str], Iterator[tuple[int, np.ndarray]]]:
    """Score every face against every population identity, ``FACE_BLOCK`` faces at a time.

    ``population`` holds ``identity`` and ``embedding`` columns (e.g. the output of
    :func:`reference_sets`). Returns the identity names (sorted) and an iterator of
    ``(first row, (rows, identities) scores)`` under the declared top-k rule, in row order.
    A long episode's full matrix would cost 8 bytes per face and identity (140 MB for 10,000
    faces and 1,700 identities); callers that only need ranks or track means never hold it.
    """
    photos = usable_photos(population).sort_values(["identity", "path"], kind="stable")
    identities = sorted(photos["identity"].unique().tolist())
    if len(faces) == 0 or not identities:
        return identities, iter([(0, np.zeros((len(faces), len(identities))))])
    emb = embedding_matrix(photos["embedding"])
    codes = pd.Categorical(photos["identity"], categories=identities).codes
    counts = np.bincount(codes, minlength=len(identities))
    width = int(counts.max())
    # (identities, width) index of each identity's photos into emb; -1 pads short identities.
    slots = np.full((len(identities), width), -1, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for i, (start, count) in enumerate(zip(starts, counts, strict=True)):
        slots[i, :count] = order[start : start + count]
    k = np.minimum(int(top_k), counts)  # effective k per identity
    k_max = int(k.max())
    in_top = np.arange(k_max)[None, :] < k[:, None]  # (identities, k_max)

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        for lo in range(0, len(faces), FACE_BLOCK):
            sims = cosine_similarity(faces[lo : lo + FACE_BLOCK], emb)
            block = sims[:, np.where(slots >= 0, slots, 0)]  # (b, identities, width)
            block[:, slots < 0] = -np.inf
            top = -np.sort(-block, axis=2)[:, :, :k_max]  # descending; pads sort last
            top = np.where(in_top[None], top, 0.0)
            # C order, as rows of a whole matrix are: numpy's row reductions (the cohort's top
            # statistics) round differently on a column-major block.
            yield lo, np.ascontiguousarray(top.sum(axis=2) / k[None, :], dtype=np.float64)

    return identities, blocks()


def identity_score_matrix(
    faces: np.ndarray, population: pd.DataFrame, top_k: int
) -> tuple[np.ndarray, list[str]]:
    """The (faces x identities) matrix of :func:`identity_score_blocks` and the identity names
    (sorted), the columns of the matrix."""
    identities, blocks = identity_score_blocks(faces, population, top_k)
    scores = np.empty((len(faces), len(identities)), dtype=np.float64)
    for lo, block in blocks:
        scores[lo : lo + len(block)] = block
    return scores, identities


def lineup_rank(claimant_scores: np.ndarray, identity_scores: np.ndarray) -> np.ndarray:
    """Rank of the claimant in each row's lineup: 1 + number of identities scoring higher.

    ``claimant_scores`` (n,) and ``identity_scores`` (n, identities); the lineup has
    ``identities + 1`` members. Ties count in the claimant's favour (strictly higher only),
    which matters only for exactly equal floats.
    """
    claimant_scores = np.asarray(claimant_scores, dtype=np.float64)
    if identity_scores.shape[1] == 0:
        return np.ones(len(claimant_scores), dtype=np.int64)
    return 1 + (identity_scores > claimant_scores[:, None]).sum(axis=1).astype(np.int64)


def track_order(faces: pd.DataFrame) -> np.ndarray:
    """Row positions of a faces table by track, then frame, then box (a stable sort): the order
    in which an episode's faces are scored, so that a track's faces are summed in time order."""
    return np.lexsort((faces["box_x1"].to_numpy(), faces["frame_index"].to_numpy(),
                       faces["track_id"].to_numpy()))


def quality_weights(quality: pd.Series | np.ndarray) -> np.ndarray:
    """Weights of faces in their track: quality in [0, 1], floored at ``QUALITY_FLOOR``."""
    q = np.nan_to_num(np.asarray(quality, dtype=np.float64), nan=0.0)
    return np.clip(q, QUALITY_FLOOR, 1.0)


class TrackMeans:
    """Quality-weighted means of rows of values per track, accumulated block by block.

    ``add(first_row, values)`` takes the rows of values in row order, so a long episode's
    (faces, m) values never need to exist at once; the sums are the same as in one call.
    """

    def __init__(self, track_ids: np.ndarray, weights: np.ndarray, width: int) -> None:
        self.tracks, self.codes = np.unique(np.asarray(track_ids), return_inverse=True)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.weight_sums = np.bincount(self.codes, weights=self.weights,
                                       minlength=len(self.tracks))
        self.sums = np.zeros((len(self.tracks), width))

    def add(self, first_row: int, values: np.ndarray) -> None:
        rows = slice(first_row, first_row + len(values))
        np.add.at(self.sums, self.codes[rows], self.weights[rows, None] * values)

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """The sorted unique track ids and the (tracks, m) means."""
        return self.tracks, self.sums / self.weight_sums[:, None]


def track_weighted_mean(
    track_ids: np.ndarray, weights: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of ``values`` ((n,) or (n, m)) per track.

    Returns the sorted unique track ids and the per-track means ((tracks,) or (tracks, m)).
    """
    values = np.asarray(values)
    if values.ndim == 1:
        tracks, codes = np.unique(np.asarray(track_ids), return_inverse=True)
        w = np.asarray(weights, dtype=np.float64)
        wsum = np.bincount(codes, weights=w, minlength=len(tracks))
        sums = np.bincount(codes, weights=w * values.astype(np.float64, copy=False),
                           minlength=len(tracks))
        return tracks, sums / wsum
    # In blocks of rows: a float64 copy of a long episode's (faces, 512) embeddings would cost
    # 40 MB per 10,000 faces.
    means = TrackMeans(track_ids, weights, values.shape[1])
    for lo in range(0, len(values), FACE_BLOCK):
        means.add(lo, values[lo : lo + FACE_BLOCK])
    return means.means()


def face_scores(
    faces: pd.DataFrame,
    emb: np.ndarray,
    references: pd.DataFrame,
    population: pd.DataFrame,
    top_k: int,
    *,
    seed: int,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """Score the faces of one episode against the claimant and the population lineup.

    ``faces`` is a faces table (contract columns, at least ``track_id`` and ``quality``; an
    ``embedding`` column, if there, is left out of the result) and ``emb`` its embeddings,
    one L2-normalised row per face in the same order (:func:`embedding_matrix`);
    ``references`` and ``population`` are ``embed_photos`` tables (``population`` with
    ``identity``). Returns

    * the faces table without embeddings plus ``score``, ``best`` (against the claimant's
      usable references), ``lineup_rank`` and ``lineup_n``;
    * the track ids (sorted) and the (tracks x identities) quality-weighted mean population
      scores (lineup members represented by as many photos as there are usable references,
      see :func:`reference_sets`), which rank the claimant's track scores in the lineup;
    * the identity names (columns of that matrix).

    The (faces x identities) scores are used block by block and never held whole.
    """
    if len(emb) != len(faces):
        raise ValueError(f"{len(emb)} embeddings for {len(faces)} faces")
    refs = embedding_matrix(usable_photos(references)["embedding"])
    scored = faces.drop(columns=["embedding"], errors="ignore").reset_index(drop=True)
    claimant = set_scores(emb, refs, top_k)
    scored["score"] = claimant["score"].to_numpy()
    scored["best"] = claimant["best"].to_numpy()
    lineup = reference_sets(population, max(len(refs), 1), seed)
    identities, blocks = identity_score_blocks(emb, lineup, top_k)
    scores = scored["score"].to_numpy()
    ranks = np.ones(len(scored), dtype=np.int64)
    means = TrackMeans(scored["track_id"].to_numpy(), quality_weights(scored["quality"]),
                       len(identities))
    for lo, block in blocks:
        ranks[lo : lo + len(block)] = lineup_rank(scores[lo : lo + len(block)], block)
        means.add(lo, block)
    scored["lineup_rank"] = ranks
    scored["lineup_n"] = np.int64(len(identities) + 1)
    tracks, track_matrix = means.means()
    return scored, tracks, track_matrix, identities
