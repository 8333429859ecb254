"""The command line answers fast and fails clearly, without importing torch."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

CHECK_NO_HEAVY = (
    "import sys, runpy\n"
    "sys.argv = ['eofm'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('eofm', run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    heavy = [m for m in ('torch', 'lightning', 'timm', 'peft', 'torchgeo') if m in sys.modules]\n"
    "    print('HEAVY:' + ','.join(heavy), file=sys.stderr)\n"
    "    raise\n"
)


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_NO_HEAVY, *args], capture_output=True, text=True, timeout=60
    )
    return proc, time.perf_counter() - start


@pytest.mark.parametrize(
    "args",
    [("--help",), ("recipes",), ("backbones",), ("fit", "demo", "trainer.max_epohcs=1")],
)
def test_light_paths_import_nothing_heavy(args: tuple[str, ...]) -> None:
    proc, _ = run_cli(*args)
    assert "HEAVY:\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY:"), proc.stderr


def test_help_lists_commands() -> None:
    proc, _ = run_cli("--help")
    assert proc.returncode == 0
    for command in ("recipes", "backbones", "fit", "test"):
        assert command in proc.stdout


def test_recipe_typo_exits_2_naming_key() -> None:
    proc, seconds = run_cli("fit", "demo", "trainer.max_epohcs=1")
    assert proc.returncode == 2
    assert "trainer.max_epohcs" in proc.stderr and "trainer.max_epochs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 5  # the 0.5 s budget itself is measured by benchmarks/cli_startup.py


def test_recipes_lists_each_shipped_recipe_once() -> None:
    proc, _ = run_cli("recipes")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert "demo" in names and len(names) == len(set(names))


def test_backbones_lists_all_variants_with_repo_bands_params() -> None:
    proc, _ = run_cli("backbones")
    assert proc.returncode == 0
    out = proc.stdout
    for name in (
        "prithvi_eo_v1_100",
        "prithvi_eo_v2_tiny_tl",
        "prithvi_eo_v2_100_tl",
        "prithvi_eo_v2_300",
        "prithvi_eo_v2_300_tl",
        "prithvi_eo_v2_600",
        "prithvi_eo_v2_600_tl",
    ):
        assert name in out
    assert "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL@" in out
    assert "5.6M" in out  # tiny-TL: embed 192, depth 12


def test_test_command_on_a_non_run_dir_fails_cleanly(tmp_path) -> None:
    proc, _ = run_cli("test", str(tmp_path))
    assert proc.returncode != 0
    assert str(tmp_path) in proc.stderr and "Traceback" not in proc.stderr


def test_global_flags_after_the_command_and_overrides_blamed_on_the_command_line() -> None:
    """Issue 34 items 10 and 11: ``--offline`` (and ``-q``) are accepted after the command,
    as overrides are; a bad value given on the command line names the command line, not
    the recipe file."""
    from eofm.cli import _parse

    args = _parse(["fit", "demo", "--offline", "data.batch_size=2", "-q"])
    assert args.offline and args.quiet and args.overrides == ["data.batch_size=2"]
    proc, _ = run_cli("fit", "demo", "--offline", "data.batch_size=0")
    assert proc.returncode == 2, proc.stderr
    assert "unrecognized" not in proc.stderr
    assert "'data.batch_size' in the command-line overrides must be > 0" in proc.stderr
    assert "demo.yaml" not in proc.stderr
