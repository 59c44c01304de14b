"""The competition's file format: field names, kinds and file headers.

One place describes the format (see ``shared/DATA_FORMAT.md``); the generator,
the loaders and the tests all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AD_COLUMNS",
    "FIELDS",
    "FIELD_ORDER",
    "FieldSpec",
    "MULTI_VALUED",
    "SINGLE_VALUED",
    "SUBMISSION_COLUMNS",
    "TEST_COLUMNS",
    "TRAIN_COLUMNS",
    "USER_FILE",
    "AD_FILE",
    "TRAIN_FILE",
    "TEST_FILE",
]

USER_FILE = "userFeature.data"
AD_FILE = "adFeature.csv"
TRAIN_FILE = "train.csv"
TEST_FILE = "test1.csv"

AD_COLUMNS: tuple[str, ...] = (
    "aid",
    "advertiserId",
    "campaignId",
    "creativeId",
    "creativeSize",
    "adCategoryId",
    "productId",
    "productType",
)
TRAIN_COLUMNS: tuple[str, ...] = ("aid", "uid", "label")
TEST_COLUMNS: tuple[str, ...] = ("aid", "uid")
SUBMISSION_COLUMNS: tuple[str, ...] = ("aid", "uid", "score")


@dataclass(frozen=True)
class FieldSpec:
    """Shape of one ``userFeature.data`` field, as measured on the real file.

    Attributes
    ----------
    name : str
        Field name as it appears in the file.
    multi : bool
        Whether the field holds a set of ids (``True``) or a single id.
    presence : float
        Share of users that have the field.
    mean_len : float
        Mean number of values when present.
    low, high : int
        Range of the ids (``0`` is the "unknown" id where ``low == 0``).
    max_len : int
        Largest list length seen.
    """

    name: str
    multi: bool
    presence: float
    mean_len: float
    low: int
    high: int
    max_len: int


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("age", False, 1.00, 1.0, 0, 5, 1),
    FieldSpec("gender", False, 1.00, 1.0, 0, 2, 1),
    FieldSpec("marriageStatus", True, 1.00, 1.2, 0, 15, 3),
    FieldSpec("education", False, 1.00, 1.0, 0, 7, 1),
    FieldSpec("consumptionAbility", False, 1.00, 1.0, 0, 2, 1),
    FieldSpec("LBS", False, 1.00, 1.0, 0, 1000, 1),
    FieldSpec("interest1", True, 0.91, 14.3, 1, 122, 60),
    FieldSpec("interest2", True, 0.65, 5.6, 1, 82, 30),
    FieldSpec("interest3", True, 0.03, 7.3, 1, 10, 10),
    FieldSpec("interest4", True, 0.02, 4.5, 1, 10, 10),
    FieldSpec("interest5", True, 0.73, 19.8, 1, 136, 80),
    FieldSpec("kw1", True, 0.90, 4.8, 1, 800_000, 5),
    FieldSpec("kw2", True, 0.96, 4.9, 1, 122_000, 5),
    FieldSpec("kw3", True, 0.05, 4.9, 1, 59_000, 5),
    FieldSpec("topic1", True, 0.92, 5.0, 1, 10_000, 5),
    FieldSpec("topic2", True, 0.96, 5.0, 1, 10_000, 5),
    FieldSpec("topic3", True, 0.05, 5.0, 1, 10_000, 5),
    FieldSpec("appIdInstall", True, 0.02, 116.0, 1, 65_000, 900),
    FieldSpec("appIdAction", True, 0.02, 12.0, 1, 6_200, 150),
    FieldSpec("ct", True, 1.00, 1.9, 0, 4, 4),
    FieldSpec("os", True, 1.00, 1.1, 0, 2, 2),
    FieldSpec("carrier", False, 1.00, 1.0, 0, 3, 1),
    FieldSpec("house", False, 0.18, 1.0, 1, 1, 1),
)

#: Field order of the real file (``uid`` first). Parsers must not rely on it.
FIELD_ORDER: tuple[str, ...] = ("uid",) + tuple(f.name for f in FIELDS)
MULTI_VALUED: frozenset[str] = frozenset(f.name for f in FIELDS if f.multi)
SINGLE_VALUED: frozenset[str] = frozenset(f.name for f in FIELDS if not f.multi)
