"""The field schema of a click-through-rate table: :class:`FieldSpec` per input field and :class:`FeatureSchema`.

A leaf of ``attnrec.data``: the readers (:mod:`attnrec.data.readers.ctr`), the encoder (:mod:`attnrec.data.ctr`),
the shard pipeline (:mod:`attnrec.data.ctr_shards`) and the CTR models all import it, and it imports none of them.
See :mod:`attnrec.data.ctr` for the index conventions the schema's ``vocab_size`` values follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attnrec.errors import ConfigError


class FieldSpec(BaseModel):
    """One input field of a CTR table.

    ``vocab_size`` counts index 0 (missing/OOV/padding); it is 0 until :meth:`FeatureEncoder.fit` fills it.
    ``min_count``: values seen fewer times in the training data map to 0. ``hash_buckets``: hash values into
    ``1..hash_buckets`` instead of keeping a vocabulary (huge vocabularies). ``bucketize="log2"`` turns a numeric
    field into a categorical one (see the module docstring); ``transform="log1p"`` maps a kept numeric value
    ``v`` to ``sign(v) * log(1 + |v|)``. Multi-valued fields (``kind="multi"``): values are lists or strings
    split on ``sep``; at most ``max_len`` tokens are kept (``None``: the longest list seen in training);
    ``pooling`` tells the model how to combine them.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["categorical", "numeric", "multi"] = "categorical"
    vocab_size: int = Field(default=0, ge=0)
    min_count: int = Field(default=1, ge=1)
    hash_buckets: int | None = Field(default=None, ge=1)
    bucketize: Literal["none", "log2"] = "none"
    transform: Literal["none", "log1p"] = "none"
    pooling: Literal["mean", "sum"] = "mean"
    max_len: int | None = Field(default=None, ge=1)
    sep: str = "|"

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if self.bucketize != "none" and self.kind != "numeric":
            raise ValueError(f"field {self.name!r}: bucketize applies to numeric fields only")
        if self.transform != "none" and (self.kind != "numeric" or self.bucketize != "none"):
            raise ValueError(f"field {self.name!r}: transform applies to non-bucketised numeric fields only")
        if not self.sep:
            raise ValueError(f"field {self.name!r}: sep must not be empty")
        return self

    @property
    def is_categorical(self) -> bool:
        """True for categorical fields and bucketised numeric fields (one index per row)."""
        return self.kind == "categorical" or (self.kind == "numeric" and self.bucketize != "none")

    @property
    def is_numeric(self) -> bool:
        """True for numeric fields kept as floats."""
        return self.kind == "numeric" and self.bucketize == "none"

    @property
    def has_vocabulary(self) -> bool:
        """True when the field is indexed through a vocabulary (not a float, not hashed)."""
        return not self.is_numeric and self.hash_buckets is None


class FeatureSchema(BaseModel):
    """The fields of a CTR table, in column order, and the name of the 0/1 label column."""

    model_config = ConfigDict(extra="forbid")

    fields: list[FieldSpec]
    label: str = "label"

    @model_validator(mode="after")
    def _check(self) -> FeatureSchema:
        names = [f.name for f in self.fields]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate field names: {sorted(dup)}")
        if self.label in names:
            raise ValueError(f"the label {self.label!r} is also a field")
        return self

    @property
    def categorical(self) -> list[FieldSpec]:
        """Fields with one index per row (categorical and bucketised numeric), in column order."""
        return [f for f in self.fields if f.is_categorical]

    @property
    def numeric(self) -> list[FieldSpec]:
        """Numeric fields kept as floats, in column order."""
        return [f for f in self.fields if f.is_numeric]

    @property
    def multi(self) -> list[FieldSpec]:
        """Multi-valued fields, in column order."""
        return [f for f in self.fields if f.kind == "multi"]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def vocab_sizes(self) -> list[int]:
        """``vocab_size`` of each categorical field (aligned with ``CTRData.categorical`` columns)."""
        return [f.vocab_size for f in self.categorical]

    @property
    def multi_vocab_sizes(self) -> list[int]:
        """``vocab_size`` of each multi-valued field (aligned with ``CTRData.multi``'s second axis)."""
        return [f.vocab_size for f in self.multi]

    @property
    def n_categorical(self) -> int:
        return len(self.categorical)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    @property
    def n_multi(self) -> int:
        return len(self.multi)

    @property
    def multi_len(self) -> int:
        """``L``, the padded length of ``CTRData.multi``: the largest ``max_len`` (0 without multi fields)."""
        return max((f.max_len or 1 for f in self.multi), default=0)

    @property
    def is_fitted(self) -> bool:
        """True when every indexed field knows its vocabulary size."""
        return all(f.vocab_size > 0 for f in self.fields if not f.is_numeric)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise ConfigError(f"no field {name!r}; fields are {self.names}")

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSchema:
        return cls.model_validate_json(text)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> FeatureSchema:
        return cls.from_json(Path(path).read_text())
