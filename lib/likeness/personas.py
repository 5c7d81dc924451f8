"""Personas: the same face recurring across tracks and episodes.

A synthetic persona that recurs in episodes 2, 4 and 8 is itself a finding: the same rendered
face was used again. Tracks are linked by their mean embeddings (quality-weighted, from
:mod:`likeness.episodes`): two tracks are linked when the cosine similarity of their means is
at least the *link threshold*; a persona is a connected group of two or more linked tracks.

The link threshold is declared, not tuned on footage: it is the highest cosine similarity
between the means of two *different* population identities' photo halves (each identity's
usable photos are split into two halves by a seeded RNG, and each half is averaged). A series
of 80 episodes holds thousands of pairs of tracks, so a threshold with a false-link rate of 1
in 1,000 would link several pairs of different people by chance; no pair of different people
among the population's tens of thousands of pairs reaches this one (LFW, default model: 0.733,
where the 1-in-1,000 quantile is 0.596 and half of same-person pairs exceed 0.94). Links are
single-linkage: a persona is a connected group. Tracks with fewer than MIN_FACES faces are
not linked (a single-frame detection is too little to stand for a face).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from likeness import scores as sc

MIN_FACES = 3
# Without a usable population: a conservative fixed threshold (same-person photo means of the
# default model score above 0.8 in LFW).
FALLBACK_THRESHOLD = 0.8


def half_means(population: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Two averaged halves per identity with at least two usable photos."""
    photos = sc.usable_photos(population).sort_values(["identity", "path"], kind="stable")
    rng = np.random.default_rng([int(seed), 11])
    rows = []
    for identity, group in photos.groupby("identity", sort=True):
        if len(group) < 2:
            continue
        emb = sc.embedding_matrix(group["embedding"])[rng.permutation(len(group))]
        cut = len(group) // 2
        for part in (emb[:cut], emb[cut:]):
            rows.append({"identity": identity, "embedding": part.mean(axis=0)})
    return pd.DataFrame(rows, columns=["identity", "embedding"])


def link_threshold(population: pd.DataFrame, seed: int) -> float:
    """The declared link threshold (see the module docstring)."""
    means = half_means(population, seed)
    if means["identity"].nunique() < 2:
        return FALLBACK_THRESHOLD
    emb = sc.embedding_matrix(means["embedding"])
    sims = sc.cosine_similarity(emb, emb)
    ids = means["identity"].to_numpy()
    different = ids[:, None] != ids[None, :]
    upper = np.triu(np.ones_like(different), k=1).astype(bool)
    return float(sims[different & upper].max())


def link_personas(
    tracks: pd.DataFrame, embeddings: np.ndarray, threshold: float, episode_order: list[str]
) -> pd.Series:
    """Persona labels ("P1", "P2", ... by first appearance; "" for unlinked tracks).

    ``tracks`` has ``episode``, ``track_id``, ``start_s``, ``n_faces``, one row per row of
    ``embeddings`` (L2-normalised track means).
    """
    n = len(tracks)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    eligible = tracks["n_faces"].to_numpy() >= MIN_FACES
    if n:
        sims = sc.cosine_similarity(embeddings, embeddings)
        pairs = np.argwhere(np.triu(sims >= threshold, k=1) & eligible[:, None] & eligible[None])
        for i, j in pairs:
            parent[root(int(i))] = root(int(j))
    roots = np.array([root(i) for i in range(n)], dtype=np.int64)
    sizes = pd.Series(roots).value_counts()
    order_of = {e: k for k, e in enumerate(episode_order)}
    appearance = pd.DataFrame({
        "root": roots,
        "episode_rank": tracks["episode"].map(order_of).to_numpy(),
        "start_s": tracks["start_s"].to_numpy(dtype=float),
        "track_id": tracks["track_id"].to_numpy(),
    }).sort_values(["episode_rank", "start_s", "track_id"], kind="stable")
    names: dict[int, str] = {}
    for r in appearance["root"]:
        if sizes[r] >= 2 and r not in names:
            names[r] = f"P{len(names) + 1}"
    return pd.Series([names.get(r, "") for r in roots], index=tracks.index, dtype=str)


PERSONA_COLUMNS = ["persona", "episode", "track_id", "start_s", "end_s", "log10_lr"]


def personas_table(tracks: pd.DataFrame) -> pd.DataFrame:
    """One row per linked track, by persona then appearance (PERSONA_COLUMNS)."""
    if tracks.empty:
        return pd.DataFrame(columns=PERSONA_COLUMNS)
    linked = tracks[tracks["persona"].fillna("") != ""].copy()
    linked["_n"] = linked["persona"].str[1:].astype(int)
    return linked.sort_values("_n", kind="stable")[PERSONA_COLUMNS]  # episodes stay in order
