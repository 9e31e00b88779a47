"""One value's domain: how to sample, check, encode and serialise it.

Every param also describes itself as *genes* — a short numeric vector with a kind per slot
(``cat``: unordered index, ``int``: ordered integer, ``real``, ``bin``) — so evolutionary
algorithms can vary it with the operator that fits its kind.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GENE_KINDS = ("cat", "int", "real", "bin")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _plain(v: Any) -> Any:
    """Numpy scalars to Python scalars, so configs serialise and compare cleanly."""
    if isinstance(v, np.generic):
        return v.item()
    return v


class Param(abc.ABC):
    """Base of all params; subclasses are small frozen dataclasses."""

    kind: str = "param"

    # -- sampling and checking -------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    @abc.abstractmethod
    def validate(self, value: Any) -> Any:
        """Return the value in canonical form, or raise ValueError naming the domain."""
        raise NotImplementedError

    @abc.abstractmethod
    def describe(self) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def default(self) -> Any:
        raise NotImplementedError

    @property
    @abc.abstractmethod
    def cardinality(self) -> float:
        """Number of distinct values (math.inf for continuous domains)."""
        raise NotImplementedError

    # -- numeric views -------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return 1

    @abc.abstractmethod
    def features(self, value: Any) -> np.ndarray:
        """Numeric features in [0, 1] for predictors."""
        raise NotImplementedError

    def features_many(self, values: Sequence[Any]) -> np.ndarray:
        """``features`` of each value, one row each (a param may do it in one numpy step)."""
        return np.stack([self.features(v) for v in values]).reshape(len(values), self.n_features)

    @property
    @abc.abstractmethod
    def gene_kinds(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    @abc.abstractmethod
    def gene_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @abc.abstractmethod
    def to_genes(self, value: Any) -> np.ndarray:
        raise NotImplementedError

    @abc.abstractmethod
    def from_genes(self, genes: np.ndarray) -> Any:
        raise NotImplementedError

    # -- serialisation ----------------------------------------------------------------------
    def to_json(self, value: Any) -> Any:
        return _plain(value)

    def from_json(self, value: Any) -> Any:
        return self.validate(value)

    def key_part(self, value: Any) -> str:
        return repr(_plain(value))


@dataclass(frozen=True)
class Choice(Param):
    """One of a fixed list of values; ordered when all values are numbers (unless told)."""

    values: tuple
    ordered: bool | None = None
    kind: str = field(default="choice", init=False, repr=False)

    def __init__(self, values: Sequence, ordered: bool | None = None):
        vals = tuple(_plain(v) for v in values)
        if not vals:
            raise ValueError("Choice needs at least one value")
        if len(set(map(repr, vals))) != len(vals):
            raise ValueError(f"Choice values must be distinct, got {list(vals)}")
        object.__setattr__(self, "values", vals)
        if ordered is None:
            ordered = all(_is_number(v) for v in vals)
        object.__setattr__(self, "ordered", bool(ordered))
        object.__setattr__(self, "kind", "choice")
        # value -> position, for the searches' hot paths; a bool is told apart from 1 and 0 (and
        # 8.0 finds 8, as equal numbers hash alike). Not a field: equality and repr ignore it.
        try:
            lookup = {(isinstance(v, bool), v): i for i, v in reversed(list(enumerate(vals)))}
        except TypeError:      # an unhashable value: ``index`` searches the list instead
            lookup = None
        object.__setattr__(self, "_lookup", lookup)

    def sample(self, rng):
        return self.values[int(rng.integers(len(self.values)))]

    def index(self, value) -> int:
        value = _plain(value)
        lookup = getattr(self, "_lookup", None)    # None too in a space pickled before it existed
        if lookup is not None:
            try:
                i = lookup.get((isinstance(value, bool), value))
            except TypeError:  # unhashable: not among hashable values
                i = None
            if i is not None:
                return i
        for i, v in enumerate(self.values):
            if v == value and isinstance(v, bool) == isinstance(value, bool):
                return i
        # tolerate 8 vs 8.0 for numbers
        if _is_number(value):
            for i, v in enumerate(self.values):
                if _is_number(v) and float(v) == float(value):
                    return i
        raise ValueError(f"{value!r} is not one of {self.describe()}")

    def validate(self, value):
        return self.values[self.index(value)]

    def describe(self) -> str:
        return ", ".join(map(str, self.values))

    def default(self):
        return self.values[0]

    @property
    def cardinality(self):
        return len(self.values)

    @property
    def n_features(self):
        return 1 if self.ordered or len(self.values) <= 2 else len(self.values)

    def features(self, value):
        return self.features_many([value])[0]

    def features_many(self, values):
        idx = np.fromiter((self.index(v) for v in values), dtype=np.intp, count=len(values))
        n = len(self.values)
        if self.n_features == 1:
            return (idx / max(n - 1, 1)).reshape(-1, 1)
        out = np.zeros((len(idx), n))
        out[np.arange(len(idx)), idx] = 1.0
        return out

    @property
    def gene_kinds(self):
        return ("int",) if self.ordered else ("cat",)

    @property
    def gene_bounds(self):
        return np.array([0.0]), np.array([float(len(self.values) - 1)])

    def to_genes(self, value):
        return np.array([float(self.index(value))])

    def from_genes(self, genes):
        i = round(float(genes[0]))    # half to even, as np.rint
        return self.values[min(max(i, 0), len(self.values) - 1)]


@dataclass(frozen=True, init=False)
class Bits(Choice):
    """A bit-width choice (e.g. 4, 8, 32); ordered, with 32/16 meaning float."""

    def __init__(self, values: Sequence[int] = (4, 8, 32)):
        vals = [int(v) for v in values]
        if any(v <= 0 for v in vals):
            raise ValueError(f"bit-widths must be positive integers, got {vals}")
        super().__init__(sorted(vals), ordered=True)
        object.__setattr__(self, "kind", "bits")

    def default(self):
        return self.values[-1]


@dataclass(frozen=True)
class Int(Param):
    """An integer in [low, high] with an optional step; log-scaled if asked."""

    low: int
    high: int
    step: int = 1
    log: bool = False
    kind: str = field(default="int", init=False, repr=False)

    def __post_init__(self):
        if self.high < self.low:
            raise ValueError(f"Int needs low <= high, got [{self.low}, {self.high}]")
        if self.step < 1:
            raise ValueError(f"Int step must be >= 1, got {self.step}")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("a log-scaled Int needs low > 0 and step 1")

    def _snap(self, v: float) -> int:
        n = round((v - self.low) / self.step)
        n = min(max(n, 0), (self.high - self.low) // self.step)
        return int(self.low + n * self.step)

    def sample(self, rng):
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return self._snap(min(math.floor(v), self.high))
        n = (self.high - self.low) // self.step
        return int(self.low + self.step * int(rng.integers(n + 1)))

    def validate(self, value):
        if isinstance(value, bool) or not _is_number(value) or float(value) != int(value):
            raise ValueError(f"{value!r} is not an integer in {self.describe()}")
        v = int(value)
        if v < self.low or v > self.high or (v - self.low) % self.step:
            raise ValueError(f"{v} is not in {self.describe()}")
        return v

    def describe(self):
        s = f"integers {self.low}..{self.high}"
        if self.step != 1:
            s += f" step {self.step}"
        return s + (" (log)" if self.log else "")

    def default(self):
        return self.low

    @property
    def cardinality(self):
        return (self.high - self.low) // self.step + 1

    def _unit(self, v: int) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def features(self, value):
        return np.array([self._unit(self.validate(value))])

    @property
    def gene_kinds(self):
        return ("real",) if self.log else ("int",)

    @property
    def gene_bounds(self):
        if self.log:
            return np.array([math.log(self.low)]), np.array([math.log(self.high)])
        return np.array([0.0]), np.array([float((self.high - self.low) // self.step)])

    def to_genes(self, value):
        v = self.validate(value)
        if self.log:
            return np.array([math.log(v)])
        return np.array([float((v - self.low) // self.step)])

    def from_genes(self, genes):
        if self.log:
            return self._snap(math.exp(float(genes[0])))
        return self._snap(self.low + float(np.rint(genes[0])) * self.step)


@dataclass(frozen=True)
class Float(Param):
    """A real number in [low, high], log-scaled if asked."""

    low: float
    high: float
    log: bool = False
    kind: str = field(default="float", init=False, repr=False)

    def __post_init__(self):
        if not self.high > self.low:
            raise ValueError(f"Float needs low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled Float needs low > 0")

    def sample(self, rng):
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def validate(self, value):
        if isinstance(value, bool) or not _is_number(value) or not math.isfinite(float(value)):
            raise ValueError(f"{value!r} is not a number in {self.describe()}")
        v = float(value)
        if v < self.low or v > self.high:
            raise ValueError(f"{v} is not in {self.describe()}")
        return v

    def describe(self):
        return f"reals {self.low}..{self.high}" + (" (log)" if self.log else "")

    def default(self):
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2

    @property
    def cardinality(self):
        return math.inf

    def features(self, value):
        v = self.validate(value)
        if self.log:
            return np.array([(math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))])
        return np.array([(v - self.low) / (self.high - self.low)])

    @property
    def gene_kinds(self):
        return ("real",)

    @property
    def gene_bounds(self):
        if self.log:
            return np.array([math.log(self.low)]), np.array([math.log(self.high)])
        return np.array([self.low]), np.array([self.high])

    def to_genes(self, value):
        v = self.validate(value)
        return np.array([math.log(v) if self.log else v])

    def from_genes(self, genes):
        g = float(genes[0])
        v = math.exp(g) if self.log else g
        return float(min(max(v, self.low), self.high))


@dataclass(frozen=True)
class Mask(Param):
    """A fixed-shape binary array (e.g. a caching schedule: steps x blocks x components).

    Values are numpy bool arrays; ``p`` is the probability of a 1 when sampling.
    """

    shape: tuple
    p: float = 0.5
    kind: str = field(default="mask", init=False, repr=False)

    def __init__(self, shape: int | Sequence[int], p: float = 0.5):
        shp = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
        if not shp or any(s <= 0 for s in shp):
            raise ValueError(f"Mask shape must be positive, got {shp}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Mask p must be in [0, 1], got {p}")
        object.__setattr__(self, "shape", shp)
        object.__setattr__(self, "p", float(p))
        object.__setattr__(self, "kind", "mask")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def sample(self, rng):
        return rng.random(self.shape) < self.p

    def validate(self, value):
        if isinstance(value, str):
            value = self._from_bitstring(value)
        arr = np.asarray(value)
        if arr.shape != self.shape:
            if arr.size == self.size:
                arr = arr.reshape(self.shape)
            else:
                raise ValueError(f"mask of shape {arr.shape} is not {self.describe()}")
        if arr.dtype != bool:
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"mask values must be 0/1 for {self.describe()}")
            arr = arr.astype(bool)
        return arr

    def describe(self):
        return f"binary masks of shape {'x'.join(map(str, self.shape))}"

    def default(self):
        return np.ones(self.shape, dtype=bool)

    @property
    def cardinality(self):
        return 2.0 ** self.size if self.size < 1024 else math.inf  # 2.0 ** 1024 overflows a float

    @property
    def n_features(self):
        return self.size

    def features(self, value):
        return self.validate(value).astype(float).ravel()

    @property
    def gene_kinds(self):
        return ("bin",) * self.size

    @property
    def gene_bounds(self):
        return np.zeros(self.size), np.ones(self.size)

    def to_genes(self, value):
        return self.validate(value).astype(float).ravel()

    def from_genes(self, genes):
        return (np.asarray(genes, dtype=float).reshape(self.shape) >= 0.5)

    def to_json(self, value):
        return "".join("1" if b else "0" for b in self.validate(value).ravel())

    def _from_bitstring(self, s: str) -> np.ndarray:
        if len(s) != self.size or set(s) - {"0", "1"}:
            raise ValueError(f"bit string of length {len(s)} is not {self.describe()}")
        return np.frombuffer(s.encode(), dtype=np.uint8).reshape(self.shape) == ord("1")

    def key_part(self, value):
        return np.packbits(self.validate(value).ravel()).tobytes().hex()


# each kind's YAML keys: required, then optional
_SPEC_KEYS = {
    "choice": (("values",), ("ordered",)),
    "bits": ((), ("values", "choices")),
    "int": (("low", "high"), ("step", "log")),
    "float": (("low", "high"), ("log",)),
    "mask": (("shape",), ("p",)),
}


def param_from_spec(spec: Any) -> Param:
    """Build a Param from its YAML form (a dict with ``kind``, or a plain list = Choice); a bad form
    is a ValueError naming the key and what it takes."""
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, (list, tuple)):
        return Choice(spec)
    kinds = ", ".join(_SPEC_KEYS)
    if not isinstance(spec, dict) or "kind" not in spec:
        hint = "; with low and high, add kind: int or kind: float" if isinstance(spec, dict) and \
            {"low", "high"} & set(spec) else ""
        raise ValueError(f"a param is a list of choices or a mapping with 'kind' (one of {kinds}), got {spec!r}{hint}")
    spec = dict(spec)
    kind = spec.pop("kind")
    if kind not in _SPEC_KEYS:
        raise ValueError(f"kind {kind!r} is not one of {kinds}")
    a = "an" if kind[0] in "aeiou" else "a"
    required, optional = _SPEC_KEYS[kind]
    unknown = [k for k in spec if k not in required + optional]
    if unknown:
        raise ValueError(f"unknown keys for {a} {kind} param: {', '.join(map(str, unknown))}; "
                         f"its keys: {', '.join(required + optional)}")
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"{a} {kind} param needs {missing[0]!r}")
    if kind == "choice":
        return Choice(_values(spec["values"], "values"), spec.get("ordered"))
    if kind == "bits":
        return Bits(_values(spec.get("values", spec.get("choices", (4, 8, 32))), "values"))
    if kind == "int":
        return Int(_number(spec["low"], "low", int), _number(spec["high"], "high", int),
                   _number(spec.get("step", 1), "step", int), bool(spec.get("log", False)))
    if kind == "float":
        return Float(_number(spec["low"], "low", float), _number(spec["high"], "high", float),
                     bool(spec.get("log", False)))
    shape = spec["shape"]
    shape = [_number(v, "shape", int) for v in shape] if isinstance(shape, (list, tuple)) else \
        _number(shape, "shape", int)
    return Mask(shape, _number(spec.get("p", 0.5), "p", float))


def _values(v: Any, key: str) -> Sequence:
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"{key}: a list of values, got {v!r}")
    return v


def _number(v: Any, key: str, kind: type) -> Any:
    """``v`` (the value of ``key``) as an int or float (a whole number for int), or a ValueError naming the key."""
    if isinstance(v, str):  # YAML reads 1e-3 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            pass
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and \
        (kind is float or v == int(v))
    if not ok:
        raise ValueError(f"{key}: {v!r} is not {'a whole number' if kind is int else 'a finite number'}")
    return kind(v)
