"""Tests of the benchmark command line checks and of the choice of matcher, without timing any model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from osoroi import benchmark
from osoroi.benchmark import load_benchmark_matcher, parse_args
from tiny_model import TinyModel


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repeats", "0"], "--repeats: invalid value '0': use an integer of at least 1"),
        (["--repeats", "three"], "--repeats: invalid integer 'three'"),
        (["--batch-size", "-4"], "--batch-size: invalid value '-4'"),
        (["--batches", "0"], "--batches: invalid value '0'"),
        (["--catalogue-items", "0"], "--catalogue-items: invalid value '0'"),
        (["--large-items", "-1"], "--large-items: invalid value '-1'"),
        (["--large-dim", "0"], "--large-dim: invalid value '0'"),
        (["--threads", "0"], "--threads: invalid value '0'"),
        (["--index-dim", "-1"], "--index-dim: invalid value '-1': use an integer of at least 0"),
        (["--catalogue-items", "100", "--index-dim", "256"], "--index-dim 256 exceeds the 100 vectors"),
    ],
)
def test_invalid_arguments_exit_early(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)

    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_photo_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--photo", str(tmp_path / "absent.jpg")])

    assert "absent.jpg' was not found" in capsys.readouterr().err


def test_folder_as_photo_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--photo", str(tmp_path)])

    assert "is a folder" in capsys.readouterr().err


def test_valid_arguments_are_parsed(tmp_path: Path) -> None:
    photo = tmp_path / "shirt.jpg"
    Image.new("RGB", (64, 80), (200, 30, 30)).save(photo)

    args = parse_args(["--photo", str(photo), "--repeats", "5", "--index-dim", "0", "--threads", "1"])

    assert args.photo == photo
    assert args.repeats == 5
    assert args.index_dim == 0
    assert args.threads == 1


def test_threads_default_to_torch_setting() -> None:
    assert parse_args([]).threads == torch.get_num_threads()


def test_trained_model_without_index_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import osoroi.matcher
    import osoroi.model

    monkeypatch.setenv("OSOROI_DERIVED_DIR", str(tmp_path))
    model = TinyModel()
    monkeypatch.setattr(osoroi.model, "load_model", lambda path=None: model)

    def no_demo() -> None:
        raise AssertionError("the demo matcher must not replace a trained model")

    monkeypatch.setattr(osoroi.matcher, "build_demo_matcher", no_demo)

    with pytest.warns(UserWarning, match="no catalogue index"):
        matcher, description = load_benchmark_matcher(items=50, index_dim=8)

    assert matcher.model is model
    assert len(matcher.index) == 50
    assert matcher.index.dim == 8
    assert "no catalogue index" in description


def test_other_file_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    import osoroi.model

    def missing_backbone_file(path: object = None) -> None:
        raise FileNotFoundError("backbone.pt")

    monkeypatch.setattr(osoroi.model, "load_model", missing_backbone_file)

    with pytest.raises(FileNotFoundError, match="backbone.pt"):
        load_benchmark_matcher(items=50, index_dim=0)


def test_missing_model_uses_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    import osoroi.matcher
    import osoroi.model

    def missing_model(path: object = None) -> None:
        raise osoroi.model.ModelNotFoundError("no model")

    model = TinyModel()
    demo = osoroi.matcher.Matcher(model, benchmark.random_index(10, 32, model.fingerprint))
    monkeypatch.setattr(osoroi.model, "load_model", missing_model)
    monkeypatch.setattr(osoroi.matcher, "build_demo_matcher", lambda: demo)

    matcher, description = load_benchmark_matcher(items=40, index_dim=0)

    assert matcher.model is model
    assert len(matcher.index) == 40
    assert description.startswith("demo model")


def test_search_benchmark_times_each_exact_method() -> None:
    results = benchmark.benchmark_search(n=300, dim=16, repeats=3, approximate="ivf")

    assert (results["n"], results["dim"]) == (300, 16)
    for method in ("numpy_exact", "numpy_exact_one_blas_thread", "numpy_einsum_exact", "torch_exact"):
        assert results[method]["runs"] == 3
        assert results[method]["p50_ms"] > 0


def test_text_photo_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "note.txt"
    note.write_text("not an image at all\n")
    with pytest.raises(SystemExit) as raised:
        parse_args(["--photo", str(note)])

    assert raised.value.code == 2
    assert "--photo: Invalid image" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--catalogue-items", "--large-items"])
def test_fewer_vectors_than_matches_are_rejected(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([option, "3"])

    assert f"{option}: invalid value '3': use at least 4 vectors" in capsys.readouterr().err


def test_output_under_a_file_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        parse_args(["--output", str(blocker / "b.json")])

    assert "is a file, not a folder" in capsys.readouterr().err
