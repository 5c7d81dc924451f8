"""Scores: the declared top-k rule, the vectorised population matrix, lineup ranks, tracks.

Real embeddings of a few LFW identities (cached in the user cache after the first run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from casedata import LFW
from likeness import scores as sc
from likeness.embeddings import embed_photos

IDENTITIES = ["Colin_Powell", "George_W_Bush", "Gerhard_Schroeder", "Hugo_Chavez",
              "Jacques_Chirac", "Tony_Blair", "Serena_Williams", "Vladimir_Putin"]
PHOTOS_PER_IDENTITY = 6


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    """Six photos each of eight LFW identities, embedded (identity, path, status, embedding)."""
    rows = []
    for identity in IDENTITIES:
        for path in sorted((LFW / identity).glob("*.jpg"))[:PHOTOS_PER_IDENTITY]:
            rows.append((identity, path))
    listing = pd.DataFrame(rows, columns=["identity", "path"])
    photos = embed_photos(listing["path"].tolist(), selection="centre", progress=False)
    photos.insert(0, "identity", listing["identity"].to_numpy())
    assert (photos["status"] == "ok").sum() >= len(photos) - 2
    return photos


def test_embedding_matrix_is_unit_norm(population):
    emb = sc.embedding_matrix(population["embedding"].dropna())
    assert emb.shape == (population["embedding"].notna().sum(), 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_top_k_rule_matches_its_definition(population):
    ok = sc.usable_photos(population)
    emb = sc.embedding_matrix(ok["embedding"])
    face, photos = emb[:1], emb[1:5]  # a Colin Powell photo against four others
    sims = (photos @ face[0]).astype(np.float64)
    for k in (1, 2, 3, 4, 10):
        expected = np.sort(sims)[::-1][: min(k, 4)].mean()
        got = sc.set_scores(face, photos, k)
        assert got["score"].iloc[0] == pytest.approx(expected, abs=1e-6)
        assert got["best"].iloc[0] == pytest.approx(sims.max(), abs=1e-6)


def test_same_person_scores_higher_than_others(population):
    ok = sc.usable_photos(population)
    emb = sc.embedding_matrix(ok["embedding"])
    ids = ok["identity"].to_numpy()
    sims = sc.cosine_similarity(emb, emb)
    same = sims[(ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)]
    different = sims[ids[:, None] != ids[None, :]]
    assert np.median(same) > np.percentile(different, 99)


def test_identity_matrix_equals_naive_loop(population):
    ok = sc.usable_photos(population)
    faces = sc.embedding_matrix(ok["embedding"])[::5]
    for top_k in (1, 3):
        matrix, names = sc.identity_score_matrix(faces, population, top_k)
        assert names == sorted(IDENTITIES)
        for j, name in enumerate(names):
            photos = sc.embedding_matrix(ok.loc[ok["identity"] == name, "embedding"])
            naive = sc.set_scores(faces, photos, top_k)["score"].to_numpy()
            np.testing.assert_allclose(matrix[:, j], naive, rtol=0, atol=1e-12)


def test_reference_sets_are_seeded_and_sized(population):
    a = sc.reference_sets(population, 2, seed=7)
    b = sc.reference_sets(population, 2, seed=7)
    c = sc.reference_sets(population, 2, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a["path"].equals(c["path"])
    assert a.groupby("identity").size().max() == 2
    assert set(a["identity"]) == set(IDENTITIES)
    assert len(sc.reference_sets(population, None, seed=7)) == len(sc.usable_photos(population))


def test_lineup_rank_of_each_identity_is_mostly_first(population):
    """A photo scored against the lineup in which its own identity is the 'claimant'."""
    ok = sc.usable_photos(population).reset_index(drop=True)
    refs = sc.reference_sets(population, 1, seed=3)
    questioned = ok[~ok["path"].isin(refs["path"])]
    faces = sc.embedding_matrix(questioned["embedding"])
    matrix, names = sc.identity_score_matrix(faces, refs, top_k=3)
    own = np.array([names.index(i) for i in questioned["identity"]])
    claimant = matrix[np.arange(len(own)), own]
    others = matrix.copy()
    others[np.arange(len(own)), own] = -np.inf
    ranks = sc.lineup_rank(claimant, others)
    assert ranks.min() == 1 and ranks.max() <= len(names)
    np.testing.assert_array_equal(ranks, 1 + (others > claimant[:, None]).sum(axis=1))
    assert np.mean(ranks == 1) >= 0.9


def test_track_score_is_quality_weighted_mean():
    track_ids = np.array([5, 5, 5, 9, 9])
    scores = np.array([0.2, 0.4, 0.9, 0.1, 0.3])
    quality = np.array([1.0, 0.5, 0.0, 0.2, 0.2])
    tracks, means = sc.track_weighted_mean(track_ids, sc.quality_weights(quality), scores)
    np.testing.assert_array_equal(tracks, [5, 9])
    w = np.array([1.0, 0.5, sc.QUALITY_FLOOR])
    assert means[0] == pytest.approx((w * scores[:3]).sum() / w.sum())
    assert means[1] == pytest.approx(0.2)
    # Matrix values (faces x identities) are averaged the same way, column by column.
    _, matrix_means = sc.track_weighted_mean(track_ids, sc.quality_weights(quality),
                                             np.stack([scores, 2 * scores], axis=1))
    np.testing.assert_allclose(matrix_means[:, 1], 2 * means)


def test_face_scores_without_references_are_nan_not_an_error(population):
    emb = sc.embedding_matrix(sc.usable_photos(population)["embedding"])[:3]
    faces = pd.DataFrame({"embedding": list(emb)})
    no_refs = population.iloc[:0]
    faces["track_id"], faces["quality"] = [1, 1, 2], 1.0
    scored, tracks, matrix, _names = sc.face_scores(faces, emb, no_refs, population, 3, seed=1)
    assert scored["score"].isna().all()
    assert "embedding" not in scored.columns
    assert list(tracks) == [1, 2] and matrix.shape == (2, len(IDENTITIES))


def test_embeddings_read_as_one_arrow_column_equal_the_row_by_row_matrix(population, tmp_path):
    """The faces table's embedding column, read with pyarrow in one step, gives the same
    float32 matrix as stacking the rows (what the scoring read before)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(sc.embedding_matrix(sc.usable_photos(population)["embedding"]))
    path = tmp_path / "faces.parquet"
    pq.write_table(pa.table({"embedding": pa.array(rows, pa.list_(pa.float32(), 512))}), path)
    column = pq.read_table(path).column("embedding")
    assert column.num_chunks >= 1
    np.testing.assert_array_equal(sc.embedding_matrix(column), sc.embedding_matrix(rows))
    assert sc.embedding_matrix(column.slice(0, 0)).shape == (0, 512)


def test_block_by_block_scoring_gives_the_numbers_of_whole_matrices(population, monkeypatch):
    """Lineup ranks, track means and the cohort statistics taken a few faces at a time (as a
    long episode is scored) are bit for bit those computed from whole (faces x identities)
    matrices, as the scoring did before it streamed them."""
    from likeness import cohort as coh

    monkeypatch.setattr(sc, "FACE_BLOCK", 5)  # several blocks, the last one short
    ok = sc.usable_photos(population).reset_index(drop=True)
    emb = sc.embedding_matrix(ok["embedding"])
    faces = pd.DataFrame({"track_id": np.arange(len(ok)) // 4,
                          "quality": np.linspace(0.0, 1.0, len(ok))})
    refs = ok[ok["identity"] == "Tony_Blair"].head(3)
    others = ok[ok["identity"] != "Tony_Blair"]
    scored, tracks, track_matrix, names = sc.face_scores(faces, emb, refs, others, 3, seed=5)

    whole, whole_names = sc.identity_score_matrix(emb, sc.reference_sets(others, 3, 5), 3)
    assert names == whole_names and len(tracks) == len(ok) // 4 + (len(ok) % 4 > 0)
    assert (scored["lineup_rank"] == sc.lineup_rank(scored["score"], whole)).all()
    codes = np.unique(faces["track_id"], return_inverse=True)[1]
    weights = sc.quality_weights(faces["quality"])
    sums = np.zeros((len(tracks), len(names)))
    np.add.at(sums, codes, weights[:, None] * whole)
    np.testing.assert_array_equal(track_matrix, sums / np.bincount(codes, weights)[:, None])

    # Row reductions (the cohort's top statistics) round as on a whole matrix's rows only in C
    # order; with 50 cohort scores a column-major block differs in the last bit.
    _, blocks = sc.identity_score_blocks(emb, others, 3)
    assert all(block.flags.c_contiguous for _, block in blocks)
    cohort = coh.make_cohort(others, 3, 3, seed=5, size=4)
    cohort_matrix, _ = sc.identity_score_matrix(emb, cohort.sets, cohort.top_k)
    for streamed, from_whole in zip(coh.test_side(cohort, emb),
                                    coh.top_stats(cohort_matrix, cohort.effective_size),
                                    strict=True):
        np.testing.assert_array_equal(streamed, from_whole)
