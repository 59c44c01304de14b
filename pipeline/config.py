"""Typed stage settings from a TOML file: defaults in one place, validated once, with a stable hash.

Each section of the config file is read by one stage and becomes one frozen
dataclass (:class:`LoadSettings`, :class:`FoldSettings`,
:class:`FeatureSettings`, :class:`TrainSettings`, :class:`ExploreSettings`,
:class:`TuneSettings`); their field defaults are
the project's defaults (``config/default.toml`` restates them, and a test
keeps the two equal). A setting that is unknown, of the wrong type or out of
range is a :class:`~core.LookalikeError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core import LookalikeError
from ensemble import COMBINERS, DEVICES, lgbm_param_name, owned_param
from ensemble.nffm import INSTALL_HINT, torch_available
from features import CTR_AGGREGATIONS

__all__ = [
    "ExploreSettings",
    "FeatureSettings",
    "FoldSettings",
    "LoadSettings",
    "NFFMSettings",
    "SettingError",
    "Settings",
    "TUNABLE_TRAIN_KEYS",
    "TrainSettings",
    "TuneSettings",
    "as_dict",
    "config_hash",
    "load_config",
]

LGBMValue = bool | int | float | str


class SettingError(LookalikeError):
    """A setting out of its range: ``key`` and what is wrong (the loader adds the file and section)."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise SettingError(key, f"must be at least {low}, got {value}")


@dataclass(frozen=True)
class LoadSettings:
    """``[load]``: parsing ``userFeature.data``."""

    chunk_lines: int = 50_000  #: user lines parsed at a time (memory vs. speed)

    def __post_init__(self) -> None:
        _at_least("chunk_lines", self.chunk_lines, 1)


@dataclass(frozen=True)
class FoldSettings:
    """``[folds]``: the one fold file."""

    n_folds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        _at_least("n_folds", self.n_folds, 2)


@dataclass(frozen=True)
class FeatureSettings:
    """``[features]``: pruning and the spec of the conversion-rate statistics."""

    missing_threshold: float = 0.9  #: drop a field missing for more than this share of training rows
    min_df: int = 20  #: drop token columns held by fewer training rows
    ctr_smoothing: float = 20.0  #: pseudo-count of the prior of the conversion rates
    chunk_rows: int = 500_000  #: pairs (and users while fitting) featurised at a time
    ctr_aggregations: tuple[str, ...] = CTR_AGGREGATIONS  #: per-row aggregations of multi-valued fields

    def __post_init__(self) -> None:
        if not 0.0 <= self.missing_threshold <= 1.0:
            raise SettingError("missing_threshold", f"must be in [0, 1], got {self.missing_threshold}")
        _at_least("min_df", self.min_df, 1)
        _at_least("ctr_smoothing", self.ctr_smoothing, 0.0)
        _at_least("chunk_rows", self.chunk_rows, 1)
        bad = [a for a in self.ctr_aggregations if a not in CTR_AGGREGATIONS]
        if bad or not self.ctr_aggregations or len(set(self.ctr_aggregations)) < len(self.ctr_aggregations):
            raise SettingError("ctr_aggregations", f"{list(self.ctr_aggregations)!r}: use some of "
                               f"{', '.join(CTR_AGGREGATIONS)}, each once")


@dataclass(frozen=True)
class ExploreSettings:
    """``[explore]``: the exploration report and the seed profiles (``make explore``)."""

    top_values: int = 15  #: values per field in the conversion-rate bars (the rest pooled)
    min_support: int = 1000  #: training rows a value needs for its own bar
    min_df: int = 20  #: users a token needs to be counted per aid (rarer ones only pooled)
    max_len: int = 30  #: list lengths from this on share one bin
    association_rows: int = 200_000  #: training rows sampled for the association matrix
    max_levels: int = 20  #: levels per field in the association matrix (frequent values, the rest, missing)
    seed_tokens: int = 50  #: tokens per aid in reports/seeds/<aid>.csv
    seed_min_support: int = 20  #: rows of the aid a token needs to be profiled
    seed: int = 0  #: of the association sample

    def __post_init__(self) -> None:
        for key in ("top_values", "min_support", "min_df", "max_len", "association_rows", "seed_tokens",
                    "seed_min_support"):
            _at_least(key, getattr(self, key), 1)
        _at_least("max_levels", self.max_levels, 3)


def _default_lgbm() -> dict[str, LGBMValue]:
    # learning rate 0.1 with 3 bags: on `medium`, folds 0-1, easy_dense lost 0.0023 AUC
    # against 0.05 with 5 bags, at half the time (README, "Findings")
    # max_bin 63: at full scale, fold 0, held-out AUC 0.72838 against 0.72817 with 255, boosting -14%
    # and binning -33% (README, "Train stage profile")
    return {"learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 50, "feature_fraction": 0.5,
            "lambda_l2": 1.0, "max_bin": 63}


#: ``[train]`` keys of earlier versions that are now LightGBM parameters in ``[train.lgbm]``
_MOVED_TO_LGBM = ("learning_rate", "num_leaves", "min_child_samples", "feature_fraction", "lambda_l2")
EARLY_STOPPING_METRICS = ("logloss", "aid_auc")


@dataclass(frozen=True)
class NFFMSettings:
    """``[train.nffm]``: the field-aware neural model (``nffm_raw``, ``nffm_full``; ``pip install 'lookalike[nn]'``).

    ``[train]`` seed, device, n_jobs and validation_fraction apply to it too.
    """

    embedding_dim: int = 8  #: size of each field-aware embedding
    interactions: str = "all"  #: all | user_ad | none (which field pairs interact)
    hidden_units: int = 128  #: width of the MLP's first hidden layer (0: no MLP)
    hidden_layers: int = 2  #: hidden layers, each half as wide as the one before
    dropout: float = 0.1
    learning_rate: float = 0.001  #: Adam's step size
    weight_decay: float = 0.0  #: Adam's L2 penalty
    batch_size: int = 2048
    epochs: int = 4  #: maximum passes over the training rows
    patience: int = 0  #: epochs without a better early-stopping AUC before it stops (0: the first one)
    ratio: float = 3.0  #: negatives per positive trained on (0: all); undone in the probabilities
    n_bags: int = 1  #: networks, each on its own draw of rows, their log-odds averaged

    def __post_init__(self) -> None:
        from ensemble.nffm import INTERACTIONS

        for key in ("embedding_dim", "batch_size", "epochs", "hidden_layers", "n_bags"):
            _at_least(key, getattr(self, key), 1)
        for key in ("hidden_units", "patience", "ratio", "weight_decay"):
            _at_least(key, getattr(self, key), 0)
        if self.interactions not in INTERACTIONS:
            raise SettingError("interactions", f"{self.interactions!r} is none of {', '.join(INTERACTIONS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise SettingError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0:
            raise SettingError("learning_rate", f"must be positive, got {self.learning_rate}")

    @property
    def hidden(self) -> tuple[int, ...]:
        """The MLP's hidden widths."""
        if not self.hidden_units:
            return ()
        return tuple(max(1, self.hidden_units >> k) for k in range(self.hidden_layers))


@dataclass(frozen=True)
class TrainSettings:
    """``[train]`` (and its table ``[train.lgbm]``): the models, their bags, the submission.

    ``lgbm`` holds LightGBM parameters passed to every bag as they are (any
    name or alias LightGBM knows; in the file a ``[train.lgbm]`` table that
    is merged over the defaults here).
    """

    seed: int = 0
    device: str = "cpu"  #: auto | cpu | gpu | cuda (dense-set models; sparse sets train on the CPU)
    models: tuple[str, ...] = ("easy_dense",)  #: ``<kind>_<set>[_peraid | _hybrid]`` (pipeline.models)
    n_bags: int = 3  #: bags per EasyEnsemble / BalanceCascade model
    ratio: float = 1.0  #: negatives per positive in a bag
    n_estimators: int = 400  #: maximum boosting rounds per LightGBM
    early_stopping_rounds: int = 40  #: on held-out rows of the training folds (0: off)
    early_stopping_metric: str = "logloss"  #: logloss | aid_auc (mean per-aid AUC of the held-out rows)
    validation_fraction: float = 0.1  #: share of a bag's positives held out for early stopping
    gain_share: float = 0.995  #: bags train on the fewest columns holding this share of a pilot's gain (1: all)
    categorical_crosses: bool = False  #: LightGBM categorical splits on the aid x attribute cross ids
    final: str = "auto"  #: what is submitted: auto (best out of fold), a model or a combiner
    refit: bool = True  #: submit the final model(s) refitted on all training rows
    n_jobs: int = 0  #: LightGBM threads per model (0: all cores)
    scheduler: str = ""  #: "" here; "local:N" or "tcp://host:port" (Dask)
    min_positives: int = 30  #: per-aid models: smaller seeds use the global model
    chunk_rows: int = 500_000  #: held-out and test rows built and predicted at a time
    permutation_rows: int = 50_000  #: training rows of the permutation importance in cv.md (0: none)
    lgbm: dict[str, LGBMValue] = field(default_factory=_default_lgbm)
    nffm: NFFMSettings = field(default_factory=NFFMSettings)

    def __post_init__(self) -> None:
        from pipeline.models import parse_model  # the registry reads these settings

        if self.device not in DEVICES:
            raise SettingError("device", f"{self.device!r} is none of {', '.join(DEVICES)}")
        if not self.models:
            raise SettingError("models", "is empty")
        if len(set(self.models)) < len(self.models):
            raise SettingError("models", f"names a model twice: {list(self.models)}")
        for name in self.models:
            try:
                parse_model(name)
            except ValueError as exc:
                raise SettingError("models", str(exc)) from None
        if any(parse_model(name).kind == "nffm" for name in self.models) and not torch_available():
            raise SettingError("models", f"the nffm models need PyTorch, which is not installed: {INSTALL_HINT}")
        _at_least("n_bags", self.n_bags, 1)
        if self.ratio <= 0:
            raise SettingError("ratio", f"must be positive, got {self.ratio}")
        _at_least("n_estimators", self.n_estimators, 1)
        _at_least("early_stopping_rounds", self.early_stopping_rounds, 0)
        if self.early_stopping_metric not in EARLY_STOPPING_METRICS:
            raise SettingError("early_stopping_metric",
                               f"{self.early_stopping_metric!r} is none of {', '.join(EARLY_STOPPING_METRICS)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise SettingError("validation_fraction", f"must be in [0, 1), got {self.validation_fraction}")
        if not 0.0 < self.gain_share <= 1.0:
            raise SettingError("gain_share", f"must be in (0, 1], got {self.gain_share}")
        allowed = ["auto", *self.models, *(COMBINERS if len(self.models) > 1 else ())]
        if self.final not in allowed:
            raise SettingError("final", f"{self.final!r} is none of: {', '.join(allowed)}")
        _at_least("n_jobs", self.n_jobs, 0)
        _check_scheduler(self.scheduler)
        _at_least("min_positives", self.min_positives, 1)
        _at_least("chunk_rows", self.chunk_rows, 1)
        _at_least("permutation_rows", self.permutation_rows, 0)
        for key, value in self.lgbm.items():
            if not isinstance(value, bool | int | float | str):
                raise SettingError(f"lgbm.{key}", f"must be a number, a string or a boolean, got {value!r}")
            if lgbm_param_name(key) is None:
                raise SettingError(f"lgbm.{key}", "is not a LightGBM parameter")
            if owned_param(key):
                setting = _SETTING_OF.get(owned_param(key))
                raise SettingError(f"lgbm.{key}", f"is set by the pipeline itself; use [train] {setting}" if setting
                                   else f"is set by the pipeline itself ({owned_param(key)})")


#: the estimator argument that sets a LightGBM parameter the pipeline owns -> the [train] setting behind it
_SETTING_OF = {"n_jobs": "n_jobs", "device": "device", "n_estimators": "n_estimators",
               "early_stopping_rounds": "early_stopping_rounds", "random_state": "seed"}


def _check_scheduler(scheduler: str) -> None:
    if not scheduler or scheduler.startswith("tcp://"):
        return
    n = scheduler.removeprefix("local:")
    if not scheduler.startswith("local:") or not n.isdigit() or int(n) < 1:
        raise SettingError("scheduler", f"{scheduler!r}: use '', 'local:N' (N >= 1 workers) or 'tcp://host:port'")


#: ``[train]`` settings a search space may name (every other key is a LightGBM parameter)
TUNABLE_TRAIN_KEYS = ("n_bags", "ratio", "n_estimators", "early_stopping_rounds", "validation_fraction", "gain_share")
#: how a search-space entry is sampled: uniform, log-uniform, integer, integer log-uniform
SPACE_KINDS = ("float", "log", "int", "int-log")


def _default_space() -> dict[str, tuple]:
    # around the defaults of [train.lgbm]
    return {"learning_rate": (0.03, 0.3, "log"), "num_leaves": (15, 127, "int-log"),
            "min_child_samples": (10, 400, "int-log"), "feature_fraction": (0.3, 1.0, "float"),
            "lambda_l2": (0.01, 30.0, "log")}


@dataclass(frozen=True)
class TuneSettings:
    """``[tune]`` (and its table ``[tune.space]``): what ``lookalike tune`` searches.

    ``space`` maps a LightGBM parameter (or one of :data:`TUNABLE_TRAIN_KEYS`)
    to ``[low, high]`` or ``[low, high, kind]`` (kind one of
    :data:`SPACE_KINDS`; integer bounds without a kind search integers). A
    ``[tune.space]`` table in the file replaces the default space whole.
    """

    _replace_tables: ClassVar[tuple[str, ...]] = ("space",)

    model: str = "easy_dense"  #: the model searched (``[train] models`` syntax)
    n_trials: int = 20  #: trials finished (completed or pruned) when the study stops
    folds: int = 2  #: the first N folds of the fold file are each trial's subset
    startup_trials: int = 5  #: trials before the pruner may stop one
    seed: int = 0  #: of the sampler
    space: dict[str, tuple] = field(default_factory=_default_space)

    def __post_init__(self) -> None:
        from pipeline.models import parse_model

        try:
            parse_model(self.model)
        except ValueError as exc:
            raise SettingError("model", str(exc)) from None
        _at_least("n_trials", self.n_trials, 1)
        _at_least("folds", self.folds, 1)
        _at_least("startup_trials", self.startup_trials, 0)
        if not self.space:
            raise SettingError("space", "is empty: name at least one parameter to search")
        space = {}
        for key, entry in self.space.items():
            space[key] = _space_entry(key, entry)
        object.__setattr__(self, "space", space)


def _space_entry(key: str, entry: Any) -> tuple:  # noqa: ANN401
    where = f"space.{key}"
    if key not in TUNABLE_TRAIN_KEYS:
        if lgbm_param_name(key) is None:
            raise SettingError(where, f"is neither a LightGBM parameter nor one of {', '.join(TUNABLE_TRAIN_KEYS)}")
        if owned_param(key):
            raise SettingError(where, f"is set by the pipeline itself ({owned_param(key)})")
    if not isinstance(entry, list | tuple) or len(entry) not in (2, 3):
        raise SettingError(where, f"must be [low, high] or [low, high, kind], got {entry!r}")
    low, high = entry[0], entry[1]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise SettingError(where, f"bounds must be numbers, got {entry!r}")
    kind = entry[2] if len(entry) == 3 else ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in SPACE_KINDS:
        raise SettingError(where, f"kind {kind!r} is none of {', '.join(SPACE_KINDS)}")
    if not low < high:
        raise SettingError(where, f"needs low < high, got {entry!r}")
    if "log" in kind and low <= 0:
        raise SettingError(where, f"a log range needs low > 0, got {low}")
    return (low, high, kind)


@dataclass(frozen=True)
class Settings:
    """Every stage's settings: one section of the config file each."""

    load: LoadSettings = field(default_factory=LoadSettings)
    folds: FoldSettings = field(default_factory=FoldSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    explore: ExploreSettings = field(default_factory=ExploreSettings)
    tune: TuneSettings = field(default_factory=TuneSettings)


def _coerce(path: str, where: str, value: Any, default: Any) -> Any:  # noqa: ANN401
    """``value`` from the TOML file as the type of the field (int -> float, list -> tuple)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LookalikeError(f"{path}: {where} must be a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise LookalikeError(f"{path}: {where} must be a table, got {value!r}")
        return {**default, **value}
    if dataclasses.is_dataclass(default):  # a sub-table of typed settings, e.g. [train.nffm]
        if not isinstance(value, dict):
            raise LookalikeError(f"{path}: {where} must be a table, got {value!r}")
        known = {f.name for f in dataclasses.fields(default)}
        for key in value:
            if key not in known:
                raise LookalikeError(f"{path}: unknown setting {where}.{key}")
        kwargs = {key: _coerce(path, f"{where}.{key}", v, getattr(default, key)) for key, v in value.items()}
        try:
            return dataclasses.replace(default, **kwargs)
        except SettingError as exc:
            raise LookalikeError(f"{path}: {where}.{exc.key}: {exc.message}") from None
    if type(value) is not type(default):
        raise LookalikeError(f"{path}: {where} must be {type(default).__name__}, got {value!r}")
    return value


def load_config(path: str | os.PathLike[str] | None) -> Settings:
    """Read ``path`` (TOML) over the defaults; ``None`` gives the defaults.

    Unknown sections or keys are an error (a typo must not be silently
    ignored), and so is a value of the wrong type or out of its range; the
    message names the file and the key.
    """
    if path is None:
        return Settings()
    try:
        with open(path, "rb") as fh:
            user = tomllib.load(fh)
    except FileNotFoundError:
        raise LookalikeError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LookalikeError(f"{path}: invalid TOML: {exc}") from None
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    built = {}
    for name, values in user.items():
        if name not in sections:
            raise LookalikeError(f"{path}: unknown section [{name}]")
        if not isinstance(values, dict):
            raise LookalikeError(f"{path}: {name} must be a section ([{name}])")
    for name, section in sections.items():
        cls = section.default_factory
        defaults = cls()
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in user.get(name, {}).items():
            if key not in known:
                hint = f" (now [{name}.lgbm] {key})" if name == "train" and key in _MOVED_TO_LGBM else ""
                raise LookalikeError(f"{path}: unknown setting [{name}] {key}{hint}")
            if key in getattr(cls, "_replace_tables", ()):  # the file's table replaces the default whole
                if not isinstance(value, dict):
                    raise LookalikeError(f"{path}: [{name}] {key} must be a table, got {value!r}")
                kwargs[key] = value
                continue
            kwargs[key] = _coerce(str(path), f"[{name}] {key}", value, getattr(defaults, key))
        try:
            built[name] = cls(**kwargs)
        except SettingError as exc:
            raise LookalikeError(f"{path}: [{name}] {exc.key}: {exc.message}") from None
    return Settings(**built)


def as_dict(settings: Any) -> dict[str, Any]:  # noqa: ANN401
    """A settings dataclass as plain JSON-ready values (for manifests)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def config_hash(settings: Any) -> str:  # noqa: ANN401
    """Short SHA-256 of a settings dataclass (stable across key order)."""
    text = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

