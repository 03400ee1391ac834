"""The novel-template-set rule, trained and served through a real bundle, on HDFS sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.bundle import BundleWriter, load_bundle
from agent.detectors.novel_set import NovelSetDetector, template_set
from agent.detectors.section import ModelLoad
from trainer.novel_set import NovelSetOptions, fit_and_export
from trainer.sequences import read_labelled, read_sessions
from trainer.torch_base import FitConfig
from trainer.training_data import TrainingData


def test_sets_round_trip_and_separate_hdfs_sessions(data_dir: Path, tmp_path: Path) -> None:
    """Trained on hdfs_train, served from the bundle: nearly every anomalous labelled session
    has a never-seen set, and almost no normal one does."""
    train = read_sessions(data_dir / "hdfs/deeplog/hdfs_train")
    writer = BundleWriter(tmp_path / "b")
    section = fit_and_export(TrainingData.of_sequences(train[:4000], 30, train[4000:]), writer, "novel_set",
                             NovelSetOptions(), FitConfig(), 0.001)
    writer.add_model("novel_set", section)
    bundle = load_bundle(writer.finish())
    assert section["sets"] == len({template_set(s) for s in train[:4000]})
    assert section["calibration"]["held_back_new_set_rate"] < 0.05
    det = NovelSetDetector.from_bundle(ModelLoad.of(bundle, "novel_set"))
    seqs, labels = read_labelled(data_dir / "hdfs/deeplog/robust_log_train.csv")
    labels = np.asarray(labels, dtype=bool)
    fired = np.array([bool(s and (v := det.score_session(s, [])) and v.fired) for s in seqs])
    recall = fired[labels].mean()
    fpr = fired[~labels].mean()
    assert recall > 0.95 and fpr < 0.02, (recall, fpr)
    assert det.score_session([], []) is None
    assert det.score_lines([]) == []


def test_order_does_not_matter_but_membership_does() -> None:
    """A session with a known set in another order is normal; one more template is new."""
    det = NovelSetDetector("n", {template_set([5, 22, 11, 9])}, 0.5)
    same = det.score_session([9, 11, 22, 5, 5, 11], [])
    new = det.score_session([5, 22, 11, 9, 3], [])
    assert same is not None and not same.fired
    assert new is not None and new.fired and new.score == 1.0


def test_pipeline_judges_idle_sessions_with_the_set_rule(data_dir: Path, tmp_path: Path) -> None:
    """Through the agent pipeline on raw HDFS lines keyed by block id: at end of input every
    block session is judged by the set rule, and a block whose set never occurred is flagged."""
    from agent.parsing import ParserConfig
    from agent.pipeline import Pipeline, PipelineConfig
    from agent.reader import iter_records
    from agent.types import Record, SessionVerdict
    from trainer.train import TrainOptions, train

    records = list(iter_records(data_dir / "hdfs/HDFS_v1_head20k_dev.log"))
    parser = ParserConfig(log_format="hdfs", entity=r"regex:(blk_-?\d+)")
    bundle = train(records[:8000], TrainOptions(output=tmp_path / "m", parser=parser,
                                                models=("isolation_forest", "novel_set"), progress=False)).bundle
    pipe = Pipeline.from_bundle(bundle, PipelineConfig())
    normal_block = records[0].line.split("blk_")[1].split()[0]
    odd = [r for r in records[:8000] if f"blk_{normal_block}" in r.line]
    # A block that starts normally, then logs a line never seen in training: its set is new.
    first = odd[0].line.replace(normal_block, "424242424242")
    novel = first.split(" INFO ")[0] + " WARN dfs.DataNode: Exception in receiveBlock for blk_424242424242 reset"
    crafted = [Record(first, "t"), Record(novel, "t")]
    pipe.process(crafted, 0.0)
    verdicts = [o for o in pipe.close(0.0) if isinstance(o, SessionVerdict)]
    flagged = {v.entity for v in verdicts if any(s.detector == "novel_set" and s.fired for s in v.scores)}
    assert "blk_424242424242" in flagged
