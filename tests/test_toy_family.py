"""A family is one module plus one registry line: a toy family, registered at test time,
runs ``eofm fit``, ``eofm test`` and ``eofm predict``; what it does not list is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eofm.cli import main
from eofm.errors import RecipeError
from eofm.recipe import load_recipe
from eofm.registry import REGISTRY


@pytest.fixture
def toy(monkeypatch) -> None:
    monkeypatch.setattr(REGISTRY, "_entries", dict(REGISTRY._entries))
    REGISTRY.add("family", "toy", "tests.toy_family:ToyFamily")  # the one registry line


def toy_recipe(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 2, 8, 8)).astype(np.float32)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", x)
    np.save(tmp_path / "data" / "y.npy", x[:, 0] - 0.5 * x[:, 1])
    path = tmp_path / "toy.yaml"
    path.write_text(
        "name: toy\n"
        "task: {type: toy, loss: l1, monitor: val/mae}\n"
        "backbone: {pretrained: false}\n"
        f"data: {{root: {tmp_path / 'data'}, batch_size: 4}}\n"
        "optimizer: {lr: 0.05, scheduler: none}\n"
        "trainer: {max_epochs: 3, accelerator: cpu, enable_progress_bar: false, "
        "log_every_n_steps: 1}\n"
    )
    return path


def test_a_toy_family_fits_tests_and_predicts(toy: None, tmp_path: Path, capsys) -> None:
    recipe, run, out = toy_recipe(tmp_path), tmp_path / "run", tmp_path / "out"
    assert load_recipe(recipe).task.loss == "l1"  # its own task keys, typed
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, ["task.class_names=[a,b]"])
    assert "task.class_names" in str(info.value)

    assert main(["fit", str(recipe), "--run-dir", str(run)]) == 0
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert metrics["test/mae"] is not None and metrics["test/mae"] >= 0

    scene = tmp_path / "scene.npy"
    np.save(scene, np.ones((2, 8, 8), np.float32))
    assert main(["predict", "--model", str(run), str(scene), "--out", str(out)]) == 0
    assert np.load(out / "scene_toy.npy").shape == (8, 8)

    capsys.readouterr()
    assert main(["calibrate", str(run)]) == 2  # not in the family's commands
    assert "eofm calibrate does not work on" in capsys.readouterr().err
