"""The ``lookalike`` command: one subcommand per pipeline stage.

Every subcommand takes its input and output paths as arguments (the Makefile
names them); the work itself lives in the stage modules (:mod:`pipeline.stages`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from core import LookalikeError

__all__ = ["main"]

logger = logging.getLogger("lookalike")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every stage's cleanup runs (as for Ctrl-C)."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: make sends its children a second one
    raise _Terminated


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from pipeline.synth import FAMILIES, SCALES

    p = sub.add_parser(
        "synth",
        help="generate a synthetic competition file set",
        description="Write userFeature.data, adFeature.csv, train.csv, test1.csv (and "
        "test1.truth.csv, read by reports only) in the competition's format.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--scale", default="small", choices=list(SCALES), help="size preset")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--users", type=_positive_int, help="override the number of users")
    p.add_argument("--train-rows", type=_positive_int, help="override the train rows")
    p.add_argument("--test-rows", type=_positive_int, help="override the test rows")
    p.add_argument("--aids", type=_positive_int, help="override the number of aids")
    p.add_argument("--family", default="latent", choices=list(FAMILIES),
                   help="who converts: latent (users' tastes and aids' preferences, the default) or rules "
                        "(audiences defined by targeting rules; also writes rules.json)")
    p.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    from pipeline.synth import generate, size_for_scale

    size = size_for_scale(args.scale, args.users, args.train_rows, args.aids, args.test_rows)
    generate(args.out, size, seed=args.seed, family=args.family)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file of stage settings (defaults if omitted)")


def _add_load(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="parse the competition files into sparse matrices",
        description="Parse userFeature.data in chunks into a per-user CSR matrix with "
        "vocabularies, read adFeature.csv, train.csv and test1.csv, and write them "
        "under --out (users/, ads.csv, pairs.npz). Malformed input stops with the "
        "file and line; nothing is written then.",
    )
    p.add_argument("--users", required=True, type=Path, help="userFeature.data (or .gz)")
    p.add_argument("--ads", required=True, type=Path, help="adFeature.csv")
    p.add_argument("--train", required=True, type=Path, help="train.csv")
    p.add_argument("--test", required=True, type=Path, help="test1.csv")
    p.add_argument("--out", required=True, type=Path, help="output folder (data/interim)")
    p.add_argument("--chunk-lines", type=_positive_int, help="lines per chunk (overrides the config)")
    _add_config(p)
    p.set_defaults(run=_run_load)


def _run_load(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from pipeline.config import load_config
    from pipeline.stages.load import run_load

    settings = load_config(args.config).load
    if args.chunk_lines:
        settings = replace(settings, chunk_lines=args.chunk_lines)
    _require(args.users, args.ads, args.train, args.test)
    run_load(args.users, args.ads, args.train, args.test, args.out, settings)


def _require(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            raise LookalikeError(f"input file not found: {p}")


def _add_folds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "folds",
        help="write the project's fold file",
        description="Assign every training row a fold, stratified by aid and label. "
        "Every later stage reads this one file.",
    )
    p.add_argument("--pairs", required=True, type=Path, help="pairs.npz from `load`")
    p.add_argument("--out", required=True, type=Path, help="fold file (.npy)")
    _add_config(p)
    p.set_defaults(run=_run_folds)


def _run_folds(args: argparse.Namespace) -> None:
    from pipeline.config import load_config
    from pipeline.stages.folds import run_folds

    settings = load_config(args.config).folds
    _require(args.pairs)
    run_folds(args.pairs, args.out, settings)


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="build the sparse and dense feature sets",
        description="Prune fields by missing rate and tokens by frequency, and write the "
        "sparse and dense feature sets of the train and test pairs with their column names.",
    )
    p.add_argument("--interim", required=True, type=Path, help="output folder of `load`")
    p.add_argument("--folds", required=True, type=Path, help="the fold file")
    p.add_argument("--out", required=True, type=Path, help="feature folder")
    p.add_argument("--report", required=True, type=Path, help="Markdown report to write")
    _add_config(p)
    p.set_defaults(run=_run_features)


def _run_features(args: argparse.Namespace) -> None:
    from pipeline.config import load_config
    from pipeline.stages.features import run_features

    run_features(args.interim, args.folds, args.out, args.report, load_config(args.config).features)


def _add_explore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explore",
        help="report on the loaded data and profile every seed",
        description="From the loaded data (not the raw files): per field its presence, list lengths and the "
        "conversion rate of its frequent values; per aid its rows and base rate; users across rows and the "
        "history signal; Cramer's V between fields; and per aid the tokens most over-represented among its "
        "positives. Writes REPORT, its figures in explore/ and the seed profiles in seeds/ beside it.",
    )
    p.add_argument("--interim", required=True, type=Path, help="output folder of `load`")
    p.add_argument("--report", required=True, type=Path, help="Markdown report to write (e.g. reports/explore.md)")
    _add_config(p)
    p.set_defaults(run=_run_explore)


def _run_explore(args: argparse.Namespace) -> None:
    from pipeline.config import load_config
    from pipeline.stages.explore import run_explore

    run_explore(args.interim, args.report, load_config(args.config).explore)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search a model's settings with Optuna; write the best config",
        description="Run (or resume) an Optuna study over the [tune.space] of the config: each trial trains "
        "[tune] model on the first [tune] folds folds and scores their out-of-fold mean per-aid AUC (bad "
        "trials pruned after one fold). The study is kept in the SQLite file STUDY, so an interrupted run "
        "resumes with its finished trials. Writes the best settings as a config (OUT) and a report. "
        "Needs pip install 'lookalike[tune]'.",
    )
    p.add_argument("--features", required=True, type=Path, help="feature folder of `features`")
    p.add_argument("--interim", required=True, type=Path, help="output folder of `load`")
    p.add_argument("--folds", required=True, type=Path, help="the fold file")
    p.add_argument("--study", required=True, type=Path, help="SQLite file of the study (e.g. reports/tune.db)")
    p.add_argument("--out", required=True, type=Path, help="best config to write (TOML)")
    p.add_argument("--report", required=True, type=Path, help="Markdown report to write")
    _add_config(p)
    p.set_defaults(run=_run_tune)


def _run_tune(args: argparse.Namespace) -> None:
    from pipeline.config import load_config
    from pipeline.stages.tune import run_tune

    settings = load_config(args.config)
    _require(args.features / "columns.json", args.interim / "pairs.npz", args.folds)
    text = args.config.read_text() if args.config is not None else ""
    run_tune(args.features, args.interim, args.folds, args.study, args.out, args.report, settings, text)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="cross-validate the models and write predictions and the CV report",
        description="Train every model on the fold file; write out-of-fold and test "
        "predictions under --build (oof/, pred/, models/) and the report.",
    )
    p.add_argument("--features", required=True, type=Path, help="feature folder")
    p.add_argument("--interim", required=True, type=Path, help="output folder of `load`")
    p.add_argument("--folds", required=True, type=Path, help="the fold file")
    p.add_argument("--build", required=True, type=Path, help="folder for oof/, pred/, models/")
    p.add_argument("--report", required=True, type=Path, help="cv.md to write (cv.json beside it)")
    p.add_argument("--truth", type=Path, help="synthetic test truth, for the oracle gap in the report only; "
        "ignored when the file does not exist (real data)")
    p.add_argument("--scheduler", help="run the (model, fold) tasks on Dask: 'local:N' or 'tcp://host:port' "
        "(overrides [train] scheduler; needs pip install 'lookalike[dask]')")
    _add_config(p)
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from pipeline.config import SettingError, load_config
    from pipeline.stages.train import run_train

    settings = load_config(args.config).train
    if args.scheduler is not None:
        try:
            settings = replace(settings, scheduler=args.scheduler)
        except SettingError as exc:
            raise LookalikeError(f"--scheduler {exc.message}") from None
    run_train(args.features, args.interim, args.folds, args.build, args.report, settings, truth=args.truth)


def _add_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="write the submission CSV",
        description="Write aid,uid,score for every test row, in the test file's order. The predictions "
        "carry their (aid, uid) pairs: predictions made for another test file are refused with the first "
        "line that differs.",
    )
    p.add_argument("--pred", required=True, type=Path, help="final predictions with their pairs (pred/final.npz)")
    p.add_argument("--test", required=True, type=Path, help="test1.csv")
    p.add_argument("--out", required=True, type=Path, help="submission CSV")
    p.set_defaults(run=_run_submit)


def _run_submit(args: argparse.Namespace) -> None:
    from pipeline.stages.submit import write_submission

    _require(args.pred, args.test)
    write_submission(args.pred, args.test, args.out)


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-submission",
        help="validate a submission file against a test file",
        description="Check the header aid,uid,score, that the rows are the test rows in "
        "their order, and that every score is a number in [0, 1]. Exit 0 when valid, 1 otherwise.",
    )
    p.add_argument("submission", type=Path, help="submission CSV")
    p.add_argument("test", type=Path, help="test1.csv (or test2.csv)")
    p.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> None:
    from pipeline.stages.submit import check_submission

    _require(args.submission, args.test)
    problems = check_submission(args.submission, args.test)
    if problems:
        raise LookalikeError(f"{args.submission} is not a valid submission:\n  " + "\n  ".join(problems))
    logger.info("%s is a valid submission for %s", args.submission, args.test)


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score new (aid, uid) pairs with a saved model",
        description="Reload the scoring pipeline saved by `make train` (models/scorer.joblib; its "
        "manifest's SHA-256 and library versions are checked before unpickling) and write "
        "aid,uid,score for every pair, in the pairs file's order. Pairs are featurised and "
        "scored in chunks. Scoring test1.csv reproduces the pipeline's submission exactly.",
    )
    p.add_argument("--model", required=True, type=Path, help="models/scorer.joblib")
    p.add_argument("--pairs", required=True, type=Path, help="CSV with header aid,uid (or aid,uid,label)")
    p.add_argument("--users", required=True, type=Path, help="userFeature.data with every uid of the pairs")
    p.add_argument("--out", required=True, type=Path, help="output CSV aid,uid,score")
    p.add_argument("--missing", choices=("error", "skip"), default="error",
        help="pairs with an aid the model never saw or a uid not in --users: fail, listing the "
        "first few (default), or leave them out and list them, with line and reason, in a side file "
        "named after --out (scores.csv -> scores.skipped.csv)")
    p.add_argument("--chunk-rows", type=_positive_int, default=200_000, help="pairs scored at a time")
    p.add_argument("--trust", action="store_true",
        help="load a model written with other library versions (the checksum is always checked)")
    p.set_defaults(run=_run_score)


def _run_score(args: argparse.Namespace) -> None:
    from pipeline.stages.score import score_pairs

    _require(args.model, args.pairs, args.users)
    score_pairs(
        args.model, args.pairs, args.users, args.out, missing=args.missing,
        chunk_rows=args.chunk_rows, trust_versions=args.trust,
    )


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_synth, _add_load, _add_folds, _add_features, _add_explore, _add_tune, _add_train, _add_submit, _add_check, _add_score,
]


def build_parser() -> argparse.ArgumentParser:
    """The full ``lookalike`` argument parser."""
    parser = _Parser(
        prog="lookalike",
        description="Lookalike pipeline for the Tencent 2018 competition format. "
        "Stages: synth -> load -> folds -> features -> train -> submit; explore reports on the loaded data, tune searches settings; "
        "score reloads a model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lookalike`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args.run(args)
    except LookalikeError as exc:
        print(f"lookalike {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"lookalike {args.command}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lookalike {args.command}: interrupted; earlier outputs are unchanged", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"lookalike {args.command}: terminated; earlier outputs are unchanged", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
