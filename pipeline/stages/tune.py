"""The ``tune`` stage: a hyperparameter search with Optuna over one model's settings.

Each trial trains the model on the first ``[tune] folds`` folds of the fold
file (the train stage's own :func:`~pipeline.tasks.run_task`, with the
nested CTR statistics: the design is built once, its counting pass shared
by every trial) and scores the out-of-fold mean per-aid AUC of those folds'
rows. After each fold the running score is reported to Optuna's pruner, so
a bad trial stops after its first fold.

The study lives in a SQLite file (``--study``): a run that is interrupted,
even killed mid-trial, resumes from it with every finished trial, and
several processes may share it. Trials whose process died are failed by
Optuna's heartbeat once they are ``grace`` seconds stale, and not counted.

Writes ``--out`` (a TOML config: the base config with the best settings,
accepted by ``make train CONFIG=...``) and ``--report`` (markdown, with the
optimisation history and the parameter importances as PNGs beside it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from core import LookalikeError
from ensemble import per_aid_auc
from pipeline.config import TUNABLE_TRAIN_KEYS, Settings, config_hash
from pipeline.design import Fold, TrainInputs
from pipeline.files import read_train_pairs
from pipeline.io import PathLike, stage_outputs
from pipeline.plots import save_figure
from pipeline.tasks import TrainJob, run_task

__all__ = ["run_tune", "trial_settings"]

logger = logging.getLogger(__name__)

#: seconds between a trial's heartbeats, and after which a silent running trial is failed
_HEARTBEAT, _GRACE = 10, 60


def _optuna() -> Any:  # noqa: ANN401
    try:
        import optuna
        import tomli_w  # noqa: F401 (writes the best config; the same extra)
    except ImportError:
        raise LookalikeError("lookalike tune needs Optuna: pip install 'lookalike[tune]'") from None
    optuna.logging.disable_default_handler()  # its trial messages go through our logging (-q, -v)
    optuna.logging.enable_propagation()
    logging.getLogger("optuna").setLevel(logging.NOTSET)  # and obey its level
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def trial_settings(settings: Settings, params: dict[str, Any]) -> Settings:
    """``settings`` with the tuned model alone and ``params`` applied:
    ``[train]`` keys of :data:`TUNABLE_TRAIN_KEYS` to the train settings, the rest to ``[train.lgbm]``."""
    tune = settings.tune
    train_keys = {k: v for k, v in params.items() if k in TUNABLE_TRAIN_KEYS}
    lgbm = {**settings.train.lgbm, **{k: v for k, v in params.items() if k not in TUNABLE_TRAIN_KEYS}}
    # refit on: the fold tasks then predict no test rows (a trial needs only its out-of-fold scores)
    train = dataclasses.replace(settings.train, models=(tune.model,), final="auto", refit=True, lgbm=lgbm,
                                **train_keys)
    return dataclasses.replace(settings, train=train)


def _suggest(trial: Any, space: dict[str, tuple]) -> dict[str, Any]:  # noqa: ANN401
    out = {}
    for key, (low, high, kind) in space.items():
        if kind in ("int", "int-log"):
            out[key] = trial.suggest_int(key, int(low), int(high), log=kind == "int-log")
        else:
            out[key] = trial.suggest_float(key, float(low), float(high), log=kind == "log")
    return out


def run_tune(features: PathLike, interim: PathLike, folds_path: PathLike, study_path: PathLike, out: PathLike,
             report: PathLike, settings: Settings, config_text: str = "") -> None:
    """Run (or resume) the study until ``[tune] n_trials`` trials have finished; write the best config.

    Parameters
    ----------
    features, interim, folds_path : path
        The inputs of the train stage.
    study_path : path
        The SQLite file of the study (created, or resumed).
    out : path
        The TOML config written: ``config_text`` (the base config file's text) with the best settings.
    report : path
        Markdown report; ``tune_history.png`` and ``tune_importance.png`` beside it.
    settings : Settings
        The base config; its ``[tune]`` section says what to search.
    """
    optuna = _optuna()
    tune = settings.tune
    inputs = TrainInputs(Path(features), Path(interim) / "pairs.npz", Path(folds_path))
    train = read_train_pairs(inputs.pairs)
    base = trial_settings(settings, {})
    job = TrainJob(inputs, base.train)
    t0 = time.perf_counter()
    design = job.open_design()
    if tune.folds > design.n_folds:
        raise LookalikeError(f"[tune] folds = {tune.folds}, but the fold file has {design.n_folds}")
    logger.info("design ready in %.1f s", time.perf_counter() - t0)
    y, aid = design.y, train.aid

    def objective(trial: Any) -> float:  # noqa: ANN401
        params = _suggest(trial, tune.space)
        run = trial_settings(settings, params).train
        oof, rows = [], []
        for k in range(tune.folds):
            held = np.flatnonzero(design.folds == k)
            oof.append(run_task(design, run, tune.model, Fold(k)).oof)
            rows.append(held)
            idx = np.concatenate(rows)
            score = per_aid_auc(y[idx], np.concatenate(oof), aid[idx]).mean
            trial.report(score, k)
            if k < tune.folds - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return score

    study_path = Path(study_path)
    study_path.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(  # a trial whose process died is failed once its heartbeat is stale
        f"sqlite:///{study_path.resolve()}", heartbeat_interval=_HEARTBEAT, grace_period=_GRACE)
    name = _study_name(settings)
    study = optuna.create_study(
        study_name=name, storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tune.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=0),
    )
    done = _finished(study, optuna)
    logger.info("study %s in %s: %d of %d trials finished", name, study_path, done, tune.n_trials)
    if done < tune.n_trials:
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(
            tune.n_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise LookalikeError(f"{study_path}: no trial of study {name} completed (every one pruned or failed)")
    _write_outputs(study, optuna, settings, config_text, Path(out), Path(report), study_path)


def _study_name(settings: Settings) -> str:
    """The model and a hash of what the study searches and scores (not of ``n_trials``, so that
    a run asking for more trials resumes the same study)."""
    what = {k: v for k, v in dataclasses.asdict(settings.tune).items() if k != "n_trials"}
    what["train"] = config_hash(settings.train)
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{settings.tune.model}-{digest}"


def _finished(study: Any, optuna: Any) -> int:  # noqa: ANN401
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _best_config(settings: Settings, config_text: str, params: dict[str, Any]) -> dict[str, Any]:
    """The base config file's tables with the tuned model and the best parameters."""
    config = tomllib.loads(config_text) if config_text else {}
    train = config.setdefault("train", {})
    train["models"] = [settings.tune.model]
    train["final"] = "auto"
    lgbm = train.setdefault("lgbm", {})
    for key, value in params.items():
        (train if key in TUNABLE_TRAIN_KEYS else lgbm)[key] = value
    return config


def _write_outputs(study: Any, optuna: Any, settings: Settings, config_text: str, out: Path, report: Path,  # noqa: ANN401
                   study_path: Path) -> None:
    import tomli_w

    best = study.best_trial
    config = _best_config(settings, config_text, best.params)
    trials = study.get_trials(deepcopy=False)
    with stage_outputs() as outputs:
        with open(outputs.path(out), "wb") as fh:
            tomli_w.dump(config, fh)
        history = optuna.visualization.matplotlib.plot_optimization_history(study)
        save_figure(history.figure, report.with_name("tune_history.png"), outputs)
        lines = [
            "# Hyperparameter search",
            "",
            f"Study `{study.study_name}` in `{study_path.name}` (Optuna, TPE sampler seed {settings.tune.seed}, "
            f"median pruner): model `{settings.tune.model}`, objective the out-of-fold mean per-aid AUC of "
            f"the first {settings.tune.folds} fold(s) (nested CTR statistics, the train stage's own tasks). "
            f"Best trial {best.number}: **{best.value:.4f}**; its settings are in `{out.name}` "
            f"(`make train CONFIG={out}`).",
            "",
            "| parameter | range | best |",
            "|---|---|---:|",
            *[f"| {k} | {lo} - {hi} ({kind}) | {best.params[k]:.4g} |"
              for k, (lo, hi, kind) in settings.tune.space.items()],
            "",
            "![optimisation history](tune_history.png)",
            "",
        ]
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) >= 2 and len(settings.tune.space) >= 2:
            importance = optuna.visualization.matplotlib.plot_param_importances(study)
            save_figure(importance.figure, report.with_name("tune_importance.png"), outputs)
            lines += ["![parameter importances](tune_importance.png)", ""]
        else:
            outputs.remove(report.with_name("tune_importance.png"))
            lines += ["(Parameter importances need at least two completed trials and two parameters.)", ""]
        lines += ["| trial | state | AUC | " + " | ".join(settings.tune.space) + " |",
                  "|---:|---|---:|" + "---:|" * len(settings.tune.space)]
        for t in trials:
            value = "" if t.value is None else f"{t.value:.4f}"
            lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | "
                         + " | ".join(f"{t.params[k]:.4g}" if k in t.params else "" for k in settings.tune.space)
                         + " |")
        with open(outputs.path(report), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    logger.info("best trial %d: %.4f; wrote %s and %s", best.number, best.value, out, report)
