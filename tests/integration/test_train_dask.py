"""`logdetect train --dask local:2` against a single-process `train` on the same real file (BGL):
the same templates, feature statistics, explanation profile, history check and calibration
sample (all built on the workers: no parsed line reaches the driver), and eval figures on
labelled lines neither saw within 0.005."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import REPO, need

from agent.pipeline import Pipeline, PipelineConfig
from agent.reader import iter_records
from agent.types import LineResult, Record
from trainer.eval.metrics import row
from trainer.train import TrainOptions, train

MODELS = "novelty"  # the rule that is only templates: what the merge can change
BLOCKSIZE = 300_000  # BGL_8k (1.2 MB) in 3 blocks: lines cross block boundaries


def scored(bundle: Path, records: list[Record], labels: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of the bundle's verdicts on labelled lines."""
    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    results: list[LineResult] = []
    pipe.observers.append(results.append)
    for s in range(0, len(records), 2048):
        pipe.process(records[s : s + 2048], 0.0)
    pipe.close(0.0)
    guess = np.array([r.verdict.value != "normal" for r in results])
    r = row("line", "ensemble", labels[: len(results)], guess)
    return {"precision": r.precision, "recall": r.recall, "f1": r.f1}


def test_train_on_dask_local_2_matches_one_process(data_dir: Path, tmp_path: Path) -> None:
    """Templates identical (ids and texts), and the statistics built from every line; precision,
    recall and F1 within 0.005."""
    need(importlib.util.find_spec("distributed") is not None,
         "dask[distributed] is not installed (pip install '.[fleet]')")
    train_file = data_dir / "bgl" / "BGL_8k.log"
    seen = {r.line for r in iter_records(train_file)}
    test = [r for r in iter_records(data_dir / "bgl" / "BGL_16k.log") if r.line not in seen and r.line.strip()][:4000]
    labels = np.array([not r.line.startswith("- ") for r in test])
    single = tmp_path / "single"
    train(list(iter_records(train_file)), TrainOptions(output=single, models=tuple(MODELS.split(",")), progress=False))
    dask = tmp_path / "dask"
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "train", "--dask", "local:2", "--dask-blocksize", str(BLOCKSIZE),
         "--input", str(train_file), "--output", str(dask), "--models", MODELS, "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # the local cluster stops quietly (its workers' heartbeat tracebacks on shutdown are not the user's)
    assert "Traceback" not in run.stderr and "CommClosedError" not in run.stderr, run.stderr[-3000:]
    vocab = [json.loads((b / "vocab.json").read_text()) for b in (single, dask)]
    assert vocab[0] == vocab[1], "the merged miner's templates differ from one process's"
    for name in ("features.json", "profile.json", "history.json", "score_sample.json"):  # built on the workers
        assert (single / name).read_bytes() == (dask / name).read_bytes(), name
    manifest = json.loads((dask / "manifest.json").read_text())
    assert manifest["training"]["distributed"]["workers"] == 2
    assert manifest["training"]["distributed"]["blocks"] >= 3
    figures = [scored(b, test, labels) for b in (single, dask)]
    assert labels.sum() > 0
    for name in ("precision", "recall", "f1"):
        assert abs(figures[0][name] - figures[1][name]) <= 0.005, (name, figures)


def test_train_on_dask_builds_the_sessions_one_process_builds(data_dir: Path, tmp_path: Path) -> None:
    """HDFS with one session per block id (over a thousand entities, lines of one session in
    several Dask blocks): the session model (`novel_set`, which learns the training sessions and
    is judged on the held-back ones) and everything else in the bundle equal one process's,
    except the template sizes in the miner's state and the data hash."""
    need(importlib.util.find_spec("distributed") is not None,
         "dask[distributed] is not installed (pip install '.[fleet]')")
    lines = (data_dir / "hdfs" / "HDFS_v1_head20k_dev.log").read_bytes().splitlines(keepends=True)[:6000]
    train_file = tmp_path / "hdfs.log"
    train_file.write_bytes(b"".join(lines))
    args = ["--input", str(train_file), "--log-format", "hdfs", "--entity", r"regex:(blk_-?\d+)",
            "--models", "novel_set", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for out, extra in (("single", []), ("dask", ["--dask", "local:2", "--dask-blocksize", "200000"])):
        command = [sys.executable, "-m", "agent.cli", "train", *extra, *args, "--output", str(tmp_path / out)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
    single, dask = tmp_path / "single", tmp_path / "dask"
    files = sorted(p.name for p in single.iterdir())
    assert files == sorted(p.name for p in dask.iterdir())
    assert "novel_set.json" in files or any("novel_set" in f for f in files), files
    for name in set(files) - {"drain_state.json", "manifest.json", "manifest.sha256"}:
        assert (single / name).read_bytes() == (dask / name).read_bytes(), name
    manifests = [json.loads((b / "manifest.json").read_text()) for b in (single, dask)]
    distributed = manifests[1]["training"]["distributed"]
    assert distributed["blocks"] >= 3 and distributed["entities"] > 500
    assert manifests[0]["models"] == manifests[1]["models"]
    assert manifests[0]["ensemble"] == manifests[1]["ensemble"]
