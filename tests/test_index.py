"""Tests for osoroi.index.EmbeddingIndex: saving, loading, model checks, filters and search."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from osoroi import index as index_module
from osoroi.index import (
    EmbeddingIndex,
    IndexMismatchError,
    IndexNotFoundError,
    build_catalogue_index,
    cosine_scores,
    default_index_path,
    main,
    normalize_rows,
    parse_args,
)
from tiny_model import TinyModel, write_catalogue

FINGERPRINT = {"backbone": "tiny", "weights": "random", "resolution": "16", "model": "tiny@0"}


def make_index(n: int = 8, dim: int = 4, seed: int = 0) -> EmbeddingIndex:
    rng = np.random.default_rng(seed)
    return EmbeddingIndex.from_vectors(
        vectors=rng.normal(size=(n, dim)),
        ids=np.arange(100, 100 + n),
        labels={
            "gender": ["Men", "Women"] * (n // 2),
            "masterCategory": ["Apparel"] * n,
            "articleType": ["Shirts", "Tshirts", "Watches", "Shirts"] * (n // 4),
            "baseColour": ["Black"] * (n - 1) + [float("nan")],
        },
        image_paths=[f"images/{100 + i}.jpg" for i in range(n)],
        fingerprint=FINGERPRINT,
        pixel_hashes=np.arange(n) * 7,
    )


def test_vectors_are_unit_norm_float32() -> None:
    index = make_index()

    assert index.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-6)


def test_cosine_scores_equal_the_matrix_product() -> None:
    index = make_index(n=40, dim=16)
    query = index.vectors[3]

    assert np.allclose(cosine_scores(index.vectors, query), index.vectors @ query, atol=1e-6)
    assert cosine_scores(index.vectors, query)[3] == pytest.approx(1.0, abs=1e-6)


def test_missing_label_becomes_empty_string() -> None:
    assert make_index().labels["baseColour"][-1] == ""


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="they must be unique"):
        EmbeddingIndex.from_vectors(np.ones((2, 3)), [1, 1], {}, ["a", "b"], FINGERPRINT)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = make_index()
    path = index.save(tmp_path / "index.npz")
    loaded = EmbeddingIndex.load(path)

    assert np.array_equal(loaded.vectors, index.vectors)
    assert np.array_equal(loaded.ids, index.ids)
    assert np.array_equal(loaded.image_paths, index.image_paths)
    assert np.array_equal(loaded.pixel_hashes, index.pixel_hashes)
    assert loaded.fingerprint == FINGERPRINT
    assert list(loaded.labels) == list(index.labels)
    for name in index.labels:
        assert np.array_equal(loaded.labels[name], index.labels[name])


def test_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    make_index().save(tmp_path / "index.npz")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index.npz"]


def test_save_keeps_extension_of_target(tmp_path: Path) -> None:
    # np.savez would append ".npz" to a path; the index is written to the exact name given.
    path = make_index().save(tmp_path / "catalogue.index")
    assert path.is_file()
    assert EmbeddingIndex.load(path).dim == 4


def test_default_path_is_under_derived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path))
    path = make_index().save()

    assert path == tmp_path / "index" / "catalogue-index.npz"
    assert default_index_path() == path
    assert len(EmbeddingIndex.load()) == 8


def test_load_missing_file_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="python -m osoroi.index"):
        EmbeddingIndex.load(tmp_path / "missing.npz")


def test_failed_load_creates_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path))

    with pytest.raises(IndexNotFoundError):
        EmbeddingIndex.load()

    assert not (tmp_path / "index").exists()


def test_load_corrupt_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    path.write_bytes(b"not an npz file")
    with pytest.raises(ValueError, match="Invalid index file"):
        EmbeddingIndex.load(path)


def test_model_with_same_fingerprint_is_accepted() -> None:
    make_index().check_model(TinyModel(fingerprint_model="tiny@0"))


def test_model_mismatch_names_both_fingerprints(tmp_path: Path) -> None:
    path = make_index().save(tmp_path / "index.npz")
    index = EmbeddingIndex.load(path)

    with pytest.raises(IndexMismatchError) as caught:
        index.check_model(TinyModel(fingerprint_model="tiny@1"), path)
    message = str(caught.value)
    assert "'model': 'tiny@0'" in message
    assert "'model': 'tiny@1'" in message
    assert "rebuild the index" in message
    assert str(path) in message


def test_filter_mask_combines_filters() -> None:
    index = make_index()
    mask = index.filter_mask({"gender": "Men", "articleType": "Shirts"})

    assert mask.tolist() == [True, False, False, False, True, False, False, False]


def test_filter_value_matches_ignoring_case() -> None:
    index = make_index()
    assert np.array_equal(index.filter_mask({"gender": "women"}), index.labels["gender"] == "Women")


def test_empty_filter_value_means_any() -> None:
    index = make_index()

    assert index.filter_mask({"gender": None, "articleType": ""}) is None
    assert index.filter_mask(None) is None
    assert index.filter_mask({}) is None


def test_unknown_filter_key_lists_allowed_keys() -> None:
    with pytest.raises(ValueError, match="Invalid filter key 'season'. Allowed keys: gender, masterCategory"):
        make_index().filter_mask({"season": "Summer"})


def test_unknown_filter_value_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"Invalid filter articleType='Jeans'. Allowed values: Shirts, Tshirts, Watches\."):
        make_index().filter_mask({"articleType": "Jeans"})


def test_allowed_values_leave_out_missing_labels() -> None:
    assert make_index().allowed_values("baseColour") == ["Black"]


def test_exact_search_matches_brute_force() -> None:
    index = make_index(n=40, dim=6, seed=3)
    query = np.random.default_rng(9).normal(size=6)
    hits = index.search(query, k=5)
    expected = np.argsort(-(index.vectors @ normalize_rows(query[None])[0]))[:5]

    assert hits.positions.tolist() == expected.tolist()
    assert np.all(np.diff(hits.similarities) <= 0)
    assert hits.similarities[0] <= 1.0 + 1e-6


def test_search_excludes_rows() -> None:
    index = make_index()
    query = index.vectors[3]
    hits = index.search(query, k=3, exclude=[3])

    assert 3 not in hits.positions.tolist()
    assert len(hits.positions) == 3


def test_search_with_mask_returns_only_allowed_rows() -> None:
    index = make_index(n=40, dim=6)
    mask = index.filter_mask({"articleType": "Watches"})
    hits = index.search(index.vectors[0], k=4, mask=mask)
    expected = np.flatnonzero(mask)[np.argsort(-(index.vectors[mask] @ index.vectors[0]))][:4]

    assert hits.positions.tolist() == expected.tolist()
    assert set(index.labels["articleType"][hits.positions].tolist()) == {"Watches"}


def test_search_with_large_mask_scores_in_full() -> None:
    index = make_index(n=40, dim=6)
    mask = np.ones(40, dtype=bool)
    mask[5] = False
    hits = index.search(index.vectors[5], k=40, mask=mask, exclude=[6])

    assert len(hits.positions) == 38
    assert 5 not in hits.positions.tolist()
    assert 6 not in hits.positions.tolist()


def test_search_returns_fewer_when_few_rows_pass() -> None:
    index = make_index()
    mask = index.filter_mask({"articleType": "Watches"})
    hits = index.search(index.vectors[0], k=10, mask=mask)

    assert hits.positions.tolist() == [2, 6] or hits.positions.tolist() == [6, 2]


def test_search_with_empty_mask_returns_nothing() -> None:
    index = make_index()
    hits = index.search(index.vectors[0], k=3, mask=np.zeros(len(index), dtype=bool))
    assert hits.positions.size == 0


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_search_rejects_invalid_k(k: object) -> None:
    with pytest.raises(ValueError, match="Invalid k"):
        make_index().search(np.ones(4), k=k)  # type: ignore[arg-type]


def test_search_rejects_wrong_dimension() -> None:
    with pytest.raises(ValueError, match="dimension 3 does not match the index dimension 4"):
        make_index().search(np.ones(3))


def test_faiss_search_agrees_with_exact() -> None:
    pytest.importorskip("faiss")
    index = make_index(n=200, dim=8, seed=1)
    queries = np.random.default_rng(2).normal(size=(10, 8))
    for query in queries:
        exact = index.search(query, k=3)
        approximate = index.search(query, k=3, method="faiss", exclude=[int(exact.positions[0])])
        assert approximate.positions[0] == exact.positions[1]
        assert approximate.similarities[0] == pytest.approx(exact.similarities[1], abs=1e-5)


def test_missing_faiss_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        make_index().search(np.ones(4), method="faiss")


def test_unknown_search_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="Invalid method='annoy'"):
        make_index().search(np.ones(4), method="annoy")


def test_build_catalogue_index_embeds_every_image(tmp_path: Path) -> None:
    catalogue = write_catalogue(tmp_path, n_items=6)
    (tmp_path / "images" / "1003.jpg").write_bytes(b"")  # one broken image is left out
    model = TinyModel()

    with pytest.warns(UserWarning, match=r"Left 1 items out .*1003"):
        index = build_catalogue_index(model, catalogue, batch_size=4)

    assert len(index) == 5
    assert 1003 not in index.ids.tolist()
    assert index.fingerprint == model.fingerprint
    assert index.dim == 32
    assert index.labels["usage"][0] == ""
    assert index.pixel_hashes is not None


def test_reduced_index_searches_in_fewer_dimensions(tmp_path: Path) -> None:
    index = make_index(n=40, dim=12, seed=4)
    reduced = index.reduce(5)
    loaded = EmbeddingIndex.load(reduced.save(tmp_path / "reduced.npz"))
    query = np.random.default_rng(5).normal(size=12)
    mean, components = reduced.projection
    expected = normalize_rows(((normalize_rows(query[None]) - mean) @ components))[0]

    assert reduced.dim == 5
    assert reduced.input_dim == 12
    assert np.allclose(np.linalg.norm(reduced.vectors, axis=1), 1.0, atol=1e-5)
    assert loaded.search(query, k=3).positions.tolist() == np.argsort(-(reduced.vectors @ expected))[:3].tolist()
    assert loaded.search(index.vectors[7], k=1).positions.tolist() == [7]


def test_reduced_index_rejects_second_reduction() -> None:
    with pytest.raises(ValueError, match="already reduced"):
        make_index(n=40, dim=12).reduce(5).reduce(3)


def test_reduce_rejects_invalid_dimension() -> None:
    with pytest.raises(ValueError, match=r"Invalid dim=12: use an integer in \[1, 11\]"):
        make_index(n=40, dim=12).reduce(12)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--reduce-dim", "-1"], "--reduce-dim: invalid value '-1': use an integer of at least 0"),
        (["--reduce-dim", "many"], "--reduce-dim: invalid integer 'many'"),
        (["--batch-size", "0"], "--batch-size: invalid value '0': use an integer of at least 1"),
        (["--num-workers", "-2"], "--num-workers: invalid value '-2'"),
        (["--device", "toaster"], "invalid --device 'toaster'"),
    ],
)
def test_cli_rejects_invalid_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)

    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_folder_as_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(["--output", str(tmp_path)])

    assert raised.value.code == 2
    assert "is a folder" in capsys.readouterr().err


def _fail_embedding(*args: object, **kwargs: object) -> None:
    raise AssertionError("the embedding pass must not start")


def test_cli_checks_reduce_dim_before_embedding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import osoroi.model
    import osoroi.splits

    catalogue = write_catalogue(tmp_path, n_items=6)
    monkeypatch.setattr(osoroi.model, "load_model", lambda path=None: TinyModel())
    monkeypatch.setattr(osoroi.splits, "load_clean_catalogue", lambda: catalogue)
    monkeypatch.setattr(index_module, "build_catalogue_index", _fail_embedding)

    status = main(["--reduce-dim", "64", "--output", str(tmp_path / "index.npz")])

    error = capsys.readouterr().err.strip()
    assert status == 1
    assert error.startswith("python -m osoroi.index: error: Invalid --reduce-dim=64")
    assert "[1, 31]" in error
    assert "\n" not in error
    assert not (tmp_path / "index.npz").exists()


def test_cli_missing_model_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    monkeypatch.setattr(index_module, "build_catalogue_index", _fail_embedding)

    status = main(["--model", str(tmp_path / "absent.pt")])

    error = capsys.readouterr().err
    assert status == 1
    assert "python -m osoroi.index: error:" in error
    assert "absent.pt" in error
    assert "Traceback" not in error


def test_cli_missing_data_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import osoroi.model

    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path / "derived"))
    monkeypatch.setenv("OSOROI_CATALOGUE_DIR", str(tmp_path / "no-catalogue"))
    monkeypatch.setattr(osoroi.model, "load_model", lambda path=None: TinyModel())
    monkeypatch.setattr(index_module, "build_catalogue_index", _fail_embedding)

    status = main([])

    error = capsys.readouterr().err
    assert status == 1
    assert "python -m osoroi.index: error: Fashion Product Images (Small) not found" in error
    assert "Traceback" not in error
