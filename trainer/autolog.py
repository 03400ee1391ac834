"""AutoLog-style dense autoencoder (seed 001; Catillo et al., ESWA 2022) over window vectors.

What it learns from, and why there: the vector of a window holds the other models' scores
(`agent.detectors.autolog`), and a model scores the data it was fitted on lower than tomorrow's
logs. So the autoencoder is fitted on the HELD-BACK normal sessions (`data.val_seqs`), which
the input models (trained before it, on `data.train_seqs`) never saw: their scores there are
what they will be in service. The held-back sessions are split in two, alternately (or, with
fewer than 4 sessions, each cut in time): the first part fits the autoencoder and the inputs'
normalisation, the second sets its thresholds. The trainer's own second half of the held-back
lines (membership judging) is never touched here. Without held-back data it falls back to the
training sessions and reads no other model's scores (no leakage, counts only).

The held-back part is small (a tenth of the lines by default), so the counts are also learned
from the training sessions (`counts_from_training`), with every input entry neutral (0, as for a
line an input does not judge): those rows carry no input model's score, so nothing leaks.

The network: D → hidden → latent → hidden → D, ReLU, trained on the mean squared error; the
exported graph outputs that error per row, and the entry rebuilt worst (for explanations). Rows
are every window (the last `window` lines at each position) and every whole session of the
fitting part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.bundle import BundleWriter
from agent.detectors.autolog import INPUT, OUTPUT, WORST, AutoLogScorer, InputNorm, Key, key_of, vectors, width
from agent.errors import InputError
from agent.features import FEATURE_NAMES
from agent.models import SEQUENCES, WINDOW, find
from agent.onnx_session import OnnxModel, RuntimeOptions
from agent.types import Level, LineContext, ParsedLine, TemplatedLine
from trainer.calibrate import calibrate
from trainer.export import OPSET, check_parity, export_torch, sample_rows
from trainer.torch_base import FitConfig, TorchDetector, import_torch
from trainer.training_data import TrainingData

HISTORY = 64  # the agent's per-entity history (FeatureConfig.history_len): what input models see


@dataclass
class AutoLogOptions:
    """The autoencoder's size, its window, which models' scores it reads, and a work cap."""

    window: int = 20
    hidden: int = 64
    latent: int = 8
    inputs: tuple[str, ...] = ("deeplog", "lstm_ae")  # read where the bundle has them
    max_windows: int = 60000  # held-back positions scored by the inputs (sessions beyond are left out)
    # also learn the counts from the training sessions, their input entries neutral (0): the
    # held-back part alone is small, and these rows carry no input model's score (no leakage)
    counts_from_training: bool = True
    # the net is tiny and its data often small: at least this many passes (early stopping and
    # the time budget still apply), at this learning rate, whatever the torch models' settings
    min_epochs: int = 40
    learning_rate: float = 1e-2


@dataclass(frozen=True)
class Unit:
    """A stretch of one held-back session: positions [start, end) of session `session`."""

    session: int
    start: int
    end: int


def build_net(dim: int, opts: AutoLogOptions) -> Any:
    """The dense autoencoder whose forward pass is each row's mean squared reconstruction error."""
    torch = import_torch()
    nn = torch.nn
    hidden = max(8, min(opts.hidden, dim))

    class DenseAutoencoder(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, opts.latent), nn.ReLU(),
                nn.Linear(opts.latent, hidden), nn.ReLU(), nn.Linear(hidden, dim),
            )

        def forward(self, x: Any) -> Any:
            return ((self.net(x) - x) ** 2).mean(dim=1)

    return DenseAutoencoder()


def served(net: Any) -> Any:
    """The exported graph: each row's error and the vector entry rebuilt worst (what an alert names)."""
    torch = import_torch()

    class Served(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            residual = (self.net.net(x) - x) ** 2
            return residual.mean(dim=1), residual.argmax(dim=1)

    return Served()


class AutoLogTrainer(TorchDetector):
    """Fits the dense autoencoder with the shared torch training loop."""

    name = "autolog"

    def __init__(self, dim: int, options: AutoLogOptions, config: FitConfig | None = None) -> None:
        super().__init__(config)
        self.dim = dim
        self.options = options

    def build(self) -> Any:
        """A fresh network for this vector width."""
        return build_net(self.dim, self.options)

    def loss(self, model: Any, batch: Sequence[Any]) -> Any:
        """Mean reconstruction error of the batch."""
        return model(batch[0]).mean()


def split_units(seqs: Sequence[Sequence[int]], seed: int) -> tuple[list[Unit], list[Unit]]:
    """Fitting and threshold units of the held-back sessions: alternate sessions (in a seeded
    order) when there are at least 4, else each session cut at 60 % of its positions."""
    nonempty = [i for i, s in enumerate(seqs) if s]
    if len(nonempty) >= 4:
        order = list(np.random.default_rng(seed).permutation(nonempty))
        units = [Unit(int(i), 0, len(seqs[int(i)])) for i in order]
        return units[0::2], units[1::2]
    fit, cal = [], []
    for i in nonempty:
        cut = max(1, int(len(seqs[i]) * 0.6))
        fit.append(Unit(i, 0, cut))
        if cut < len(seqs[i]):
            cal.append(Unit(i, cut, len(seqs[i])))
    return fit, cal or fit


def capped(units: Sequence[Unit], limit: int) -> list[Unit]:
    """The first units holding at most `limit` positions in all (at least one unit)."""
    out: list[Unit] = []
    total = 0
    for u in units:
        if out and total + (u.end - u.start) > limit:
            break
        out.append(u)
        total += u.end - u.start
    return out


def contexts_of(tokens: Sequence[int], levels: Sequence[int], entity: str, start: int, end: int) -> list[LineContext]:
    """The `LineContext`s the agent would build for positions [start, end) of one entity's
    lines: the history the input models read (what they key on); no text, no features."""
    out = []
    features = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    for i in range(start, end):
        lo = max(0, i + 1 - HISTORY)
        level = Level(min(max(int(levels[i]), 0), 7))
        line = ParsedLine(raw="", message="", timestamp=float(i), level=level, entity=entity)
        tl = TemplatedLine(line, -1, "", (), int(tokens[i]), tokens[i] == 0, float(i))
        out.append(LineContext(tl, features, tuple(tokens[lo : i + 1]), tuple(levels[lo : i + 1])))
    return out


@dataclass
class Scored:
    """Raw input scores of some units: per input, line scores per position and one session score."""

    line: dict[str, list[list[float | None]]]
    session: dict[str, list[float | None]]


def score_inputs(detectors: dict[str, Any], units: Sequence[Unit], seqs: Sequence[Sequence[int]],
                 levels: Sequence[Sequence[int]]) -> Scored:
    """The input models' raw line and session scores on the units, as served."""
    out = Scored({n: [] for n in detectors}, {n: [] for n in detectors})
    for k, u in enumerate(units):
        toks, lv = seqs[u.session], levels[u.session]
        contexts = contexts_of(toks, lv, f"autolog-{k}", u.start, u.end)
        for name, det in detectors.items():
            out.line[name].append([None if s is None else s.score for s in det.score_lines(contexts)])
            whole = det.score_session(toks[u.start : u.end], lv[u.start : u.end])
            out.session[name].append(None if whole is None else whole.score)
    return out


def norm_of(name: str, scored: Scored) -> InputNorm:
    """An input's centre (median) and scale (p99 − median, at least 5 % of the median) on the
    fitting units, per scope."""

    def centre_scale(values: list[float]) -> tuple[float, float]:
        if not values:
            return 0.0, 0.0
        a = np.asarray(values, dtype=np.float64)
        median = float(np.median(a))
        # floor: a near-constant score on few held-back lines must not turn noise into outliers
        return median, max(float(np.quantile(a, 0.99)) - median, 0.05 * abs(median), 1e-6)

    lines = [s for unit in scored.line[name] for s in unit if s is not None]
    sessions = [s for s in scored.session[name] if s is not None]
    return InputNorm(name, centre_scale(lines), centre_scale(sessions))


def keys_of(units: Sequence[Unit], seqs: Sequence[Sequence[int]], levels: Sequence[Sequence[int]],
            scored: Scored, norms: Sequence[InputNorm], window: int) -> tuple[list[Key], list[Key]]:
    """Window keys (every position) and session keys (every unit), as the serving side builds them."""
    line_keys: list[Key] = []
    session_keys: list[Key] = []
    for k, u in enumerate(units):
        toks, lv = seqs[u.session], levels[u.session]
        columns = [x.z(scored.line[x.name][k], session=False) for x in norms]
        rows = list(zip(*columns, strict=True)) if columns else [()] * (u.end - u.start)
        for i, values in zip(range(u.start, u.end), rows, strict=True):
            lo = max(0, i + 1 - min(window, HISTORY))
            line_keys.append(key_of(toks[lo : i + 1], lv[lo : i + 1], values))
        values = tuple(v for x in norms for v in x.z([scored.session[x.name][k]], session=True))
        session_keys.append(key_of(toks[u.start : u.end], lv[u.start : u.end], values))
    return line_keys, session_keys


def input_detectors(writer: BundleWriter, names: Sequence[str]) -> dict[str, Any]:
    """The served detectors of the input models already in the bundle being written."""
    from agent.detectors.base import load_detector
    from agent.detectors.section import ModelSection

    draft = writer.draft()
    out: dict[str, Any] = {}
    for name in names:
        raw = writer.manifest["models"].get(name)
        spec = find(str(raw.get("type", name))) if raw else None
        if raw is None or spec is None or spec.data is not SEQUENCES or spec.scope is not WINDOW:
            continue
        out[name] = load_detector(draft, ModelSection.parse(name, raw), RuntimeOptions(device="cpu"))
    return out


def fit_and_export(
    data: TrainingData, writer: BundleWriter, name: str, options: AutoLogOptions, fit: FitConfig,
    target_fpr: float | None,
) -> dict[str, Any]:
    """Fit the autoencoder on held-back normal windows and return its manifest section."""
    vocab_size = data.vocab_size
    if vocab_size < 2:
        raise InputError(f"{name}: a vocabulary of {vocab_size} tokens is too small to learn from")
    held_back = any(len(s) for s in data.val_seqs)
    if held_back:
        seqs = data.val_seqs
        levels = data.val_levels or [[0] * len(s) for s in seqs]
        detectors = input_detectors(writer, options.inputs)
    else:  # nothing held back: counts only, fitted and calibrated on the training sessions
        seqs = data.train_seqs
        levels = data.train_levels or [[0] * len(s) for s in seqs]
        detectors = {}
    fit_units, cal_units = split_units(seqs, fit.seed)
    separate = cal_units is not fit_units  # else too little data: thresholds on the fitting part
    fit_units = capped(fit_units, options.max_windows)
    cal_units = capped(cal_units, options.max_windows // 2)
    fit_scored = score_inputs(detectors, fit_units, seqs, levels)
    norms = [norm_of(n, fit_scored) for n in detectors]
    line_keys, session_keys = keys_of(fit_units, seqs, levels, fit_scored, norms, options.window)
    count_rows = 0
    if held_back and options.counts_from_training and data.train_seqs:
        train_levels = data.train_levels or [[0] * len(s) for s in data.train_seqs]
        order = np.random.default_rng(fit.seed).permutation(len(data.train_seqs))
        units = capped([Unit(int(i), 0, len(data.train_seqs[int(i)])) for i in order if data.train_seqs[int(i)]],
                       options.max_windows)
        neutral = Scored({n.name: [[None] * (u.end - u.start) for u in units] for n in norms},
                         {n.name: [None] * len(units) for n in norms})
        more_lines, more_sessions = keys_of(units, data.train_seqs, train_levels, neutral, norms, options.window)
        line_keys, session_keys = line_keys + more_lines, session_keys + more_sessions
        count_rows = len(more_lines) + len(more_sessions)
    # sessions are few beside windows: repeat them so they are about a quarter of the rows
    repeat = max(1, len(line_keys) // max(3 * len(session_keys), 1))
    x = vectors(line_keys + session_keys * repeat, vocab_size, len(norms))
    dim = width(vocab_size, len(norms))
    fit = dataclasses.replace(fit, epochs=max(fit.epochs, options.min_epochs), lr=options.learning_rate)
    trainer = AutoLogTrainer(dim, options, fit)
    trainer.name = name
    torch = import_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a net this small runs fastest on one thread (more only add overhead)
    try:
        hist = trainer.fit(x)
    finally:
        torch.set_num_threads(threads)

    onnx_path = writer.path_for(f"{name}.onnx")
    export_torch(served(trainer.model), (torch.as_tensor(x[:2]),), onnx_path, [INPUT], [OUTPUT, WORST])
    rows = sample_rows(len(x), 512, fit.seed)
    parity = max(check_parity(trainer.model, onnx_path, {INPUT: x[rows]}, OUTPUT),
                 check_parity(trainer.model, onnx_path, {INPUT: x[rows[:1]]}, OUTPUT))
    trainer.save_curve(writer.path_for(f"{name}_curve.png"))

    section: dict[str, Any] = {
        "type": "autolog",
        "file": f"{name}.onnx",
        "curve": f"{name}_curve.png",
        "input": INPUT,
        "output": OUTPUT,
        "outputs": [OUTPUT, WORST],
        "worst_output": WORST,
        "opset": OPSET,
        "window": options.window,
        "vocab_size": vocab_size,
        "inputs": [n.to_json() for n in norms],
        "options": asdict(options),
        "training": {"rows": len(x), "windows": len(line_keys), "sessions": len(session_keys),
                     "fitted_on": "held-back" if held_back else "training",
                     "training_rows_inputs_neutral": count_rows, **hist.summary()},
        "parity_max_abs_diff": parity,
    }
    scorer = AutoLogScorer(OnnxModel(onnx_path, RuntimeOptions(device="cpu")), section, name)
    cal_scored = score_inputs(detectors, cal_units, seqs, levels)
    cal_lines, cal_sessions = keys_of(cal_units, seqs, levels, cal_scored, norms, options.window)
    line_cal = calibrate(np.asarray(scorer.score_uncached(cal_lines)), target_fpr)
    session_cal = calibrate(np.asarray(scorer.score_uncached(cal_sessions)), target_fpr)
    section["thresholds"] = line_cal["thresholds"]
    section["session_thresholds"] = session_cal["thresholds"]
    on = ("held-back" if held_back else "training") if separate else "the fitting part"
    section["calibration"] = {**line_cal["calibration"], "target_fpr": line_cal["target_fpr"], "level": "line",
                              "on": on}
    section["session_calibration"] = {**session_cal["calibration"], "level": "session"}
    return section
