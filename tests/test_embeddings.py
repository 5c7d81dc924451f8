"""Still photos: every odd photo gets an embedding or a clear recorded status, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from casedata import ELON_REFERENCE, LFW, TESTDATA
from likeness import embeddings, faces, inference, models, photo_file

OBAMA = TESTDATA / "face_recognition/examples/obama.jpg"
OBAMA2 = TESTDATA / "face_recognition/examples/obama2.jpg"
RGBA_OBAMA2 = TESTDATA / "face_recognition/tests/test_images/32bit.png"
TWO_PEOPLE = TESTDATA / "face_recognition/examples/two_people.jpg"
MULTIFACE = TESTDATA / "facenet-pytorch/data/multiface.jpg"


@pytest.fixture(scope="module")
def embedder():
    return inference.load_embedder(models.DEFAULT_MODEL, "cpu"), faces.load_detector("cpu")


def embed(paths, embedder, **kw):
    model, detector = embedder
    return embeddings.embed_photos(
        paths, model=model, detector=detector, cache=False, progress=False, **kw
    )


@pytest.fixture(scope="module")
def odd_photos(tmp_path_factory):
    """Real photos re-saved as the odd kinds that reach an expert in practice."""
    folder = tmp_path_factory.mktemp("odd")
    rgb = Image.open(OBAMA2).convert("RGB")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    grey16 = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(folder / "grey16.png")  # mode I;16
    rgba = rgb.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[:40, :, 3] = 0  # a transparent band over the top
    Image.fromarray(alpha).save(folder / "alpha.png")
    # A real photo region with no face: the lower right corner of the group photo.
    Image.open(MULTIFACE).convert("RGB").crop((0, 560, 300, 630)).resize((400, 120)).save(
        folder / "no_face.jpg"
    )
    (folder / "text.jpg").write_text("not an image\n")
    # A portrait with a small second face in a corner (a real face, pasted at a third the size).
    portrait = Image.open(ELON_REFERENCE).convert("RGB")
    small = Image.open(OBAMA).convert("RGB")
    small = small.resize((portrait.width // 3, portrait.width // 3 * small.height // small.width))
    portrait.paste(small, (0, 0))
    portrait.save(folder / "with_bystander.jpg")
    return folder


def test_odd_modes_give_the_same_face(embedder, odd_photos):
    table = embed(
        [OBAMA2, RGBA_OBAMA2, odd_photos / "cmyk.jpg", odd_photos / "grey16.png",
         odd_photos / "alpha.png"],
        embedder,
    )
    assert list(table["status"]) == ["ok"] * 5
    reference = table["embedding"][0]
    cosines = [float(np.dot(reference, e)) for e in table["embedding"]]
    # Colour conversions move the embedding a little, a grey 16-bit copy more; all stay the
    # same person by far (different people score below 0.5).
    assert min(cosines[1:3]) > 0.95, cosines
    assert cosines[3] > 0.8 and cosines[4] > 0.9, cosines


def test_16_bit_photo_is_scaled_not_clipped(odd_photos):
    image = photo_file.read_rgb(odd_photos / "grey16.png")
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert 40 < image.mean() < 220  # clipping 16-bit values to 8 bits would give all white


def test_problem_photos_are_recorded_not_raised(embedder, odd_photos, tmp_path):
    table = embed(
        [odd_photos / "no_face.jpg", odd_photos / "text.jpg", tmp_path / "missing.jpg",
         tmp_path, odd_photos / "with_bystander.jpg", TWO_PEOPLE, MULTIFACE],
        embedder,
    )
    assert list(table["status"]) == [
        "no_face", "unreadable", "unreadable", "unreadable", "ok", "several_faces",
        "several_faces",
    ]
    assert table["embedding"][:2].isna().all()
    for path, warning in zip(table["path"], table["warning"], strict=True):
        assert path in warning  # every message names its file
    # One face clearly the largest: used, with a warning; two alike faces: not used.
    assert "2 faces; used the largest" in table["warning"][4]
    assert "none clearly the subject" in table["warning"][5]
    assert table["n_faces"][6] == 6


def test_embeddings_are_normalised_and_cached(embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path))
    model, detector = embedder
    first = embeddings.embed_photos([ELON_REFERENCE, OBAMA], model=model, detector=detector,
                                    progress=False)
    cached = list(tmp_path.rglob("*.npz"))
    assert len(cached) == 2
    # The second call reads the cache (no model needed) and gives identical numbers.
    second = embeddings.embed_photos([ELON_REFERENCE, OBAMA], model=None, detector=None,
                                     progress=False)
    for a, b in zip(first["embedding"], second["embedding"], strict=True):
        assert np.array_equal(a, b)
        assert abs(np.linalg.norm(a) - 1) < 1e-5
    assert float(np.dot(first["embedding"][0], first["embedding"][1])) < 0.5


def test_population_identity_without_usable_photo(embedder, tmp_path, odd_photos):
    population = tmp_path / "population"
    for name in ("Colin_Powell", "Empty_Person", "No_Face_Person", "Elon_Musk"):
        (population / name).mkdir(parents=True)
    for photo in sorted((LFW / "Colin_Powell").iterdir())[:2]:
        (population / "Colin_Powell" / photo.name).write_bytes(photo.read_bytes())
    (population / "No_Face_Person/1.jpg").write_bytes((odd_photos / "no_face.jpg").read_bytes())
    (population / "Elon_Musk/1.jpg").write_bytes(ELON_REFERENCE.read_bytes())
    model, detector = embedder
    table = embeddings.embed_population(
        population, exclude=["Elon_Musk"], model=model, detector=detector, cache=False,
        progress=False,
    )
    assert "Elon_Musk" not in set(table["identity"])
    status = table.groupby("identity")["status"].agg(list).to_dict()
    assert status == {"Colin_Powell": ["ok", "ok"], "Empty_Person": ["no_photo"],
                      "No_Face_Person": ["no_face"]}
