"""Space: an ordered, immutable set of named params, and the one place configs are checked."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .params import Param, param_from_spec

Config = dict[str, Any]


class SpaceError(ValueError):
    """A config or a space declaration that does not fit; the message names the param (``param``) when
    one param is at fault, so a recipe can name the field as ``space.<param>``."""

    def __init__(self, message: object, param: str | None = None):
        super().__init__(f"{param}: {message}" if param else str(message))
        self.param = param


class Space:
    """Named params; sample, validate, encode (features), key (stable id), genes, join."""

    def __init__(self, params: Mapping[str, Any]):
        if not params:
            raise SpaceError("a space needs at least one param")
        built: dict[str, Param] = {}
        for name, spec in params.items():
            if not isinstance(name, str) or not name:
                raise SpaceError(f"param names must be non-empty strings, got {name!r}")
            try:
                built[name] = param_from_spec(spec)
            except (ValueError, TypeError) as e:
                raise SpaceError(e, param=name) from None
        self._params = built
        lo, hi, kinds, slices, at = [], [], [], {}, 0
        for name, p in built.items():
            a, b = p.gene_bounds
            lo.append(a)
            hi.append(b)
            kinds.extend(p.gene_kinds)
            slices[name] = slice(at, at + len(p.gene_kinds))
            at += len(p.gene_kinds)
        self._gene_lo = np.concatenate(lo).astype(float)
        self._gene_hi = np.concatenate(hi).astype(float)
        self._gene_kinds = tuple(kinds)
        self._gene_slices = slices
        self._rows: list[Config] | None = None  # the configs that exist, for a sparse table (None: all do)
        self._row_keys: dict[str, int] = {}
        self._raw_row_keys: set[str] = set()   # with a canonical rule: the rows' own keys
        self._row_features: np.ndarray | None = None
        self._canonical: Callable[[Config], Config] | None = None
        self._features: Callable[[list[Config]], np.ndarray] | None = None

    # -- equivalent configs (one model reached by several configs) -----------------------------
    def with_canonical(self, canonical: Callable[[Config], Config]) -> Space:
        """The same space where ``key`` identifies the model, not the config: configs that build the
        same model (an isomorphic cell, a block's settings below its stage's depth) share the key of
        ``canonical(config)``, so a search evaluates each model once. ``canonical`` must pickle."""
        out = copy.copy(self)   # a subclass (a buildable space) stays one
        out._canonical = canonical
        out._row_features = None
        if self._rows is not None:
            out._rows = list(self._rows)
            out._row_keys = out._keys_of_rows()
        return out

    @property
    def canonical(self) -> Callable[[Config], Config] | None:
        return self._canonical

    # -- features that know the space's structure (a cell's wiring) ---------------------------
    def with_features(self, features: Callable[[list[Config]], np.ndarray] | None) -> Space:
        """The same space, with ``features(configs)`` (one row per config) appended to what the
        predictors see: what a space knows of its structure that one column per param cannot say,
        such as the depth of each operation in a cell and the paths to its output. Must pickle.
        ``None`` gives the space without them."""
        out = copy.copy(self)
        out._features = features
        return out

    @property
    def extra_features(self) -> Callable[[list[Config]], np.ndarray] | None:
        return self._features

    # -- sparse spaces (a table that is not the full cross product of its columns) -------------
    def with_rows(self, rows: list[Mapping[str, Any]]) -> Space:
        """The same params, restricted to these configs: sampling and ``nearest_row`` stay on them."""
        out = Space(self._params)
        out._canonical = self._canonical
        out._features = self._features
        out._rows = [out.validate(r) for r in rows]
        out._row_keys = out._keys_of_rows()
        return out

    def _keys_of_rows(self) -> dict[str, int]:
        keys: dict[str, int] = {}
        self._raw_row_keys = set()
        for i, r in enumerate(self._rows or []):
            keys.setdefault(self.key(r), i)   # rows of one model: the first stands for them
            if self._canonical is not None:
                self._raw_row_keys.add(self._raw_key(r))
        return keys

    @property
    def rows(self) -> list[Config] | None:
        return self._rows

    @property
    def n_configs(self) -> float:
        """How many configs exist: the rows of a sparse space, else the cardinality."""
        return len(self._row_keys) if self._rows is not None else self.cardinality

    def exists(self, config: Mapping[str, Any]) -> bool:
        """Whether the config is one the space holds: any valid config, or on a sparse table one of
        its rows (or another config of a row's model)."""
        return self._rows is None or self.key(config) in self._row_keys

    def nearest_row(self, config: Mapping[str, Any], exclude: Any = ()) -> Config:
        """The config itself when it exists, else the closest existing one (in features) whose key is
        not in ``exclude`` (the evaluated ones), so a search never asks for a config that is not there."""
        if self._rows is None:
            return dict(config)
        at = self._row_keys.get(self.key(config))
        if at is not None:  # the config's own row, else the row of the same model
            own = self._canonical is None or self._raw_key(self.validate(config)) in self._raw_row_keys
            return dict(config) if own else dict(self._rows[at])
        if self._row_features is None:
            self._row_features = self.encode_many(self._rows)
        d = np.linalg.norm(self._row_features - self.encode(config), axis=1)
        for i in np.argsort(d, kind="stable"):
            if self.key(self._rows[i]) not in exclude:
                return dict(self._rows[i])
        return dict(self._rows[int(np.argmin(d))])

    # -- mapping-like ------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._params)

    @property
    def params(self) -> dict[str, Param]:
        return dict(self._params)

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {p.describe()}" for n, p in self._params.items())
        return f"Space({inner})"

    @property
    def cardinality(self) -> float:
        return math.prod(p.cardinality for p in self._params.values())

    # -- configs -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Config:
        if self._rows is not None:
            return dict(self._rows[int(rng.integers(len(self._rows)))])
        return {n: p.sample(rng) for n, p in self._params.items()}

    def default(self) -> Config:
        return {n: p.default() for n, p in self._params.items()}

    def validate(self, config: Mapping[str, Any]) -> Config:
        """Return the canonical config; raise SpaceError naming the param and its domain."""
        if not isinstance(config, Mapping):
            raise SpaceError(f"a config is a mapping of param names to values, got {type(config).__name__}")
        unknown = [k for k in config if k not in self._params]
        if unknown:
            raise SpaceError(f"unknown params {', '.join(map(str, unknown))}; the space has {', '.join(self.names)}")
        out: Config = {}
        for name, p in self._params.items():
            if name not in config:
                raise SpaceError(f"missing; expected {p.describe()}", param=name)
            try:
                out[name] = p.validate(config[name])
            except (ValueError, TypeError) as e:
                raise SpaceError(e, param=name) from None
        return out

    def key(self, config: Mapping[str, Any]) -> str:
        """A stable id: equal configs (or, with ``with_canonical``, configs of one model) get equal keys
        across processes and runs."""
        values = {n: p.validate(config[n]) for n, p in self._params.items()}
        if self._canonical is not None:
            rep = self._canonical(values)
            values = {n: p.validate(rep[n]) for n, p in self._params.items()}
        return self._raw_key(values)

    def _raw_key(self, values: Mapping[str, Any]) -> str:
        """The key of already validated values, with no canonical rule applied."""
        parts = [f"{n}={p.key_part(values[n])}" for n, p in self._params.items()]
        return hashlib.sha1(";".join(parts).encode()).hexdigest()[:16]

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """Numeric features in [0, 1] (one-hot for unordered choices) for predictors."""
        return np.concatenate([p.features(config[n]) for n, p in self._params.items()])

    def encode_many(self, configs: list[Mapping[str, Any]]) -> np.ndarray:
        """``encode`` of each config, one row each; built a param (a column block) at a time."""
        if not configs:
            return np.zeros((0, self.n_features))
        return np.concatenate([p.features_many([c[n] for c in configs]) for n, p in self._params.items()], axis=1)

    @property
    def n_features(self) -> int:
        return sum(p.n_features for p in self._params.values())

    def to_json(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {n: p.to_json(config[n]) for n, p in self._params.items()}

    def from_json(self, data: Mapping[str, Any]) -> Config:
        return self.validate({n: self._params[n].from_json(v) if n in self._params else v for n, v in data.items()})

    # -- genes (for evolutionary algorithms) --------------------------------------------------
    @property
    def n_genes(self) -> int:
        return len(self._gene_kinds)

    @property
    def gene_kinds(self) -> tuple[str, ...]:
        return self._gene_kinds

    @property
    def gene_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._gene_lo.copy(), self._gene_hi.copy()

    def to_genes(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.concatenate([p.to_genes(config[n]) for n, p in self._params.items()])

    def from_genes(self, genes: np.ndarray) -> Config:
        genes = np.asarray(genes, dtype=float)
        return {n: p.from_genes(genes[self._gene_slices[n]]) for n, p in self._params.items()}

    # -- composition -------------------------------------------------------------------------
    @staticmethod
    def join(spaces: Mapping[str, Space] | None = None, /, **named: Space) -> Space:
        """Join sub-spaces under prefixes: join(quant=q, prune=p) has quant.*, prune.* params."""
        merged = dict(spaces or {}, **named)
        params: dict[str, Param] = {}
        for prefix, sub in merged.items():
            for name, p in sub._params.items():
                params[f"{prefix}.{name}" if prefix else name] = p
        return Space(params)

    def subspace(self, prefix: str) -> Space:
        return Space({n[len(prefix) + 1:]: p for n, p in self._params.items() if n.startswith(prefix + ".")})

    @staticmethod
    def split(config: Mapping[str, Any], prefix: str) -> Config:
        """The part of a joined config under ``prefix.``, with the prefix removed."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in config.items() if k.startswith(prefix + ".")}

    def describe(self) -> dict[str, str]:
        return {n: p.describe() for n, p in self._params.items()}
