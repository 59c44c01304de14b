"""One module per stage of ``make features train submit``: load, folds, features, train, submit, score.

Each stage function reads the files the Makefile names, calls the pure
estimators of ``features`` and ``ensemble``, and writes its outputs under
temporary names that are renamed into place only when the stage has finished.
"""
