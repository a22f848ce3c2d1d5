"""Readers per source format; each returns a :class:`attnrec.data.table.Dataset` with external string ids."""

from attnrec.data.readers.amazon import read_amazon, read_amazon_meta
from attnrec.data.readers.files import ReadLimits, read_id_list
from attnrec.data.readers.movielens import (
    read_movielens,
    read_movielens_1m,
    read_movielens_100k,
    read_movielens_csv,
    read_movielens_recbole,
)
from attnrec.data.readers.tabular import read_interactions, read_recbole_atomic, read_table

__all__ = [
    "ReadLimits",
    "read_amazon",
    "read_amazon_meta",
    "read_id_list",
    "read_interactions",
    "read_movielens",
    "read_movielens_100k",
    "read_movielens_1m",
    "read_movielens_csv",
    "read_movielens_recbole",
    "read_recbole_atomic",
    "read_table",
]
