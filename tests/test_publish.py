"""``eofm publish`` and ``hf://`` models, through the real client and the loopback Hub."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from eofm.cli import main
from eofm.errors import EofmError
from eofm.families.restore import load_trained
from tests.realdata import SHARED
from tests.runs import make_run_dir
from tests.test_training import flood_root, overrides  # noqa: F401 - fixture reuse

ROOT = Path(__file__).resolve().parents[1]
CHIP = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
SAMPLES = ROOT / "samples" / "sen1floods11"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory) -> Path:
    run = make_run_dir(
        tmp_path_factory.mktemp("pub") / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0]
    )
    split = "data.split_csv={train: splits/flood_train_data.csv, val: splits/flood_valid_data.csv, test: splits/flood_test_data.csv}"
    assert main(["test", str(run), f"data.root={SAMPLES}", split]) == 0
    return run


def predict_bytes(model: str, out: Path) -> bytes:
    assert (
        main(
            [
                "predict",
                "--model",
                model,
                str(CHIP),
                "--out",
                str(out),
                "--no-progress",
                "--no-quicklook",
            ]
        )
        == 0
    )
    return (out / "Nigeria_812045_S1Hand.tif").read_bytes()


def test_dry_run_writes_the_exact_folder_and_a_real_card(
    evaluated_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    assert (
        main(["publish", str(evaluated_run), "--repo", "tester/flood", "--dry-run", str(folder)])
        == 0
    )
    assert {p.name for p in folder.iterdir()} == {
        "README.md",
        "config.json",
        "model.safetensors",
        "recipe.yaml",
    }
    card = (folder / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "eofm" and meta["license"] == "apache-2.0"
    assert {"earth-observation", "segmentation"} <= set(meta["tags"])
    assert "base_model" not in meta  # random init: no false claim of a base model
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert {m["name"] for m in metrics} >= {"test/mIoU", "test/IoU_water"}
    assert "| 1 | VV |" in card and "| 2 | VH |" in card
    assert "eofm predict --model hf://tester/flood" in card
    assert "random initialisation" in card
    config = __import__("json").loads((folder / "config.json").read_text())
    assert config["bands"] == ["VV", "VH"] and config["mean"] == [-11.0, -18.0]
    assert (
        config["weights_sha256"]
        == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    )
    assert config["backbone"]["patch_size"] == [1, 16, 16] and config["eofm_version"]


def test_unevaluated_run_says_so(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    assert main(["publish", str(run), "--repo", "tester/x", "--dry-run", str(tmp_path / "b")]) == 0
    card = (tmp_path / "b" / "README.md").read_text()
    assert "not evaluated" in card and "model-index" not in front_matter(card)


def test_publish_download_predict_is_bit_exact(
    evaluated_run: Path, hub, tmp_path: Path, capsys
) -> None:
    assert main(["publish", str(evaluated_run), "--repo", "tester/flood-full"]) == 0
    out = capsys.readouterr().out
    sha = hub.commits("tester/flood-full")[-1]
    assert sha in out
    assert ("POST", "/api/validate-yaml") in hub.requests_seen
    files = set(hub.repos[("model", "tester/flood-full")].commits[sha].files)
    assert files == {"README.md", "config.json", "model.safetensors", "recipe.yaml"}
    local = predict_bytes(str(evaluated_run), tmp_path / "local")
    remote = predict_bytes(f"hf://tester/flood-full@{sha}", tmp_path / "remote")
    assert local == remote
    # evaluate the published model on a dataset
    split = "data.split_csv={train: splits/flood_train_data.csv, val: splits/flood_valid_data.csv, test: splits/flood_test_data.csv}"
    target = tmp_path / "metrics.json"
    assert (
        main(
            [
                "test",
                "hf://tester/flood-full",
                f"data.root={SAMPLES}",
                split,
                "--output",
                str(target),
            ]
        )
        == 0
    )
    assert "test/mIoU" in target.read_text()


def test_offline_cache_after_one_download(evaluated_run: Path, hub, tmp_path: Path) -> None:
    assert main(["publish", str(evaluated_run), "--repo", "tester/flood-offline"]) == 0
    sha = hub.commits("tester/flood-offline")[-1]
    load_trained(f"hf://tester/flood-offline@{sha}")  # fills the cache
    code = "import sys; from eofm.families.restore import load_trained; print(load_trained(sys.argv[1]).source)"
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9"
    )  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-c", code, f"hf://tester/flood-offline@{sha}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sha in proc.stdout


def test_publishing_twice_keeps_the_old_revision(tmp_path: Path, hub) -> None:
    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    assert main(["publish", str(run), "--repo", "tester/twice"]) == 0
    first = hub.commits("tester/twice")[-1]
    state = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    state["state_dict"]["model.head.1.bias"] += 1.0  # a retrained head
    torch.save(state, run / "checkpoints" / "best.ckpt")
    assert main(["publish", str(run), "--repo", "tester/twice"]) == 0
    second = hub.commits("tester/twice")[-1]
    assert second != first
    old, new = load_trained(f"hf://tester/twice@{first}"), load_trained("hf://tester/twice")
    assert new.source.endswith(second) and old.source.endswith(first)
    assert not torch.equal(old.model.head[1].bias, new.model.head[1].bias)


def test_missing_revision_is_a_clear_error(evaluated_run: Path, hub) -> None:
    assert main(["publish", str(evaluated_run), "--repo", "tester/flood-rev"]) == 0
    with pytest.raises(EofmError, match="'v9'"):
        load_trained("hf://tester/flood-rev@v9")


def test_private_repo_needs_the_token(evaluated_run: Path, hub, monkeypatch) -> None:
    assert main(["publish", str(evaluated_run), "--repo", "tester/flood-private", "--private"]) == 0
    assert hub.repos[("model", "tester/flood-private")].private
    with monkeypatch.context() as without_token:  # before anything is cached
        without_token.delenv("HF_TOKEN")
        with pytest.raises(EofmError) as info:
            load_trained("hf://tester/flood-private")
    assert "private" in str(info.value) and hub.token not in str(info.value)
    assert load_trained("hf://tester/flood-private").source.startswith("hf://tester/flood-private@")


def test_no_token_is_a_clear_error_that_prints_no_token(
    evaluated_run: Path, hub, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    assert main(["publish", str(evaluated_run), "--repo", "tester/no-token"]) == 1
    captured = capsys.readouterr()
    assert "HF_TOKEN" in captured.err
    assert hub.token not in captured.err + captured.out
    assert ("model", "tester/no-token") not in hub.repos


def test_invalid_repo_id_is_refused(evaluated_run: Path, capsys) -> None:
    assert main(["publish", str(evaluated_run), "--repo", "../etc"]) == 2
    assert "not a valid Hub repo id" in capsys.readouterr().err


def test_branch_revision(evaluated_run: Path, hub) -> None:
    assert (
        main(["publish", str(evaluated_run), "--repo", "tester/flood-branch", "--revision", "v1"])
        == 0
    )
    repo = hub.repos[("model", "tester/flood-branch")]
    assert "config.json" in repo.commits[repo.branches["v1"]].files
    assert "config.json" not in repo.commits[repo.branches["main"]].files
    assert load_trained("hf://tester/flood-branch@v1").bands == ["VV", "VH"]


def serve_tiny_prithvi(hub) -> str:
    """The official tiny-TL repo layout (random tensors), so a run can start 'pretrained'."""
    from eofm.backbones.loading import load_backbone

    torch.manual_seed(3)
    encoder = load_backbone("prithvi_eo_v2_tiny_tl", pretrained=False)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return hub.add_commit(
        "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL",
        {"Prithvi_EO_V2_tiny_TL.pt": buffer.getvalue()},
    )


def test_adapter_only_round_trip(hub, flood_root: Path, tmp_path: Path) -> None:  # noqa: F811
    base_sha = serve_tiny_prithvi(hub)
    run = tmp_path / "lora"
    args = overrides(
        flood_root,
        **{"adapter.mode": "lora", "backbone.pretrained": "true", "trainer.max_epochs": 1},
    )
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 0
    assert main(["publish", str(run), "--repo", "tester/flood-lora", "--adapter-only"]) == 0
    sha = hub.commits("tester/flood-lora")[-1]
    files = hub.repos[("model", "tester/flood-lora")].commits[sha].files
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    assert (
        len(files["adapter_model.safetensors"]) < 5_000_000
    )  # the 5.5M-parameter base stays on its repo
    config = __import__("json").loads(files["config.json"])
    assert config["adapter_only"] and config["backbone"]["revision"] == base_sha
    # the base repo moves on; the adapter still loads its pinned base revision
    serve_tiny_prithvi(hub)
    local = predict_bytes(str(run), tmp_path / "local")
    remote = predict_bytes(f"hf://tester/flood-lora@{sha}", tmp_path / "remote")
    assert local == remote
    # a run without LoRA cannot be published adapter-only, and says why
    frozen = make_run_dir(tmp_path / "frozen", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    code = main(
        [
            "publish",
            str(frozen),
            "--repo",
            "tester/x",
            "--adapter-only",
            "--dry-run",
            str(tmp_path / "b"),
        ]
    )
    assert code == 2 and not (tmp_path / "b").exists()
