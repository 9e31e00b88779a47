"""The YAML recipe: its schema, its error messages, and how a recipe becomes a running study."""

from __future__ import annotations

import copy
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .engine.objectives import DIRECTIONS, parse_constraint
from .engine.reference import check_reference
from .spaces.space import SpaceError


class RecipeError(ValueError):
    """A recipe that cannot run; the message names each bad field and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectiveCfg(_Strict):
    direction: Literal["minimize", "maximize"] = "minimize"
    target: str | None = None   # which hardware target measures it (latency objectives)
    predictor: dict[str, Any] | None = None  # predict it instead, if the predictor passes its held-out check


class SearchCfg(_Strict):
    algorithm: str = "nsga2"
    budget: int | None = Field(100, gt=0)
    time_budget_s: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    batch_size: int | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    executor: Literal["local", "threads", "processes", "ray"] = "local"
    workers: int = Field(4, gt=0)
    memory_mb: float | None = Field(None, gt=0)   # processes / ray: a worker over this is replaced
    address: str | None = None                    # ray: a cluster's address (none: a local Ray)
    options: dict[str, Any] = Field(default_factory=dict)
    initial: list[dict[str, Any]] | Literal["baselines", "named"] = Field(default_factory=list)

    @field_validator("algorithm")
    @classmethod
    def _known(cls, v: str) -> str:
        from .core.options import did_you_mean
        from .engine.algorithms.base import algorithm_names

        names = algorithm_names()
        if v in names or (v.startswith("ng:") and len(v) > 3):
            return v
        raise ValueError(f"{v!r} is not one of {', '.join(names)}{did_you_mean(v, names)}")

    @field_validator("options")
    @classmethod
    def _options_known(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Options the algorithm does not take (or values it refuses) are recipe errors, found before the run."""
        algorithm = info.data.get("algorithm")
        if v and algorithm:
            from .engine.algorithms.base import make_algorithm

            try:
                make_algorithm(algorithm, **v)
            except TypeError as e:
                raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _some_budget(self):
        if self.budget is None and self.time_budget_s is None:
            raise ValueError("give budget (trials) and/or time_budget_s (seconds)")
        return self


class TrackingCfg(_Strict):
    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    trials: Literal["steps", "children", "none"] = "steps"   # how each trial reaches MLflow (see tracking/mlflow.py)
    checkpoint_every_s: float = Field(30.0, gt=0)  # the longest wait between uploads of the log (more often when cheap)


class Recipe(_Strict):
    name: str
    description: str = ""
    workload: str | dict[str, Any]
    space: dict[str, Any] | None = None
    objectives: dict[str, str | ObjectiveCfg]
    constraints: dict[str, str] = Field(default_factory=dict)
    reference_point: dict[str, float] | None = None
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    search: SearchCfg = Field(default_factory=SearchCfg)
    tracking: TrackingCfg | bool = Field(default_factory=TrackingCfg)
    _base_dir: Path | None = PrivateAttr(None)  # the recipe file's folder: relative paths and modules are found there

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", v):
            raise ValueError(f"{v!r} is not allowed; letters, digits and _ . - (the first a letter or digit): "
                             f"it names the search in MLflow")
        return v

    @field_validator("objectives")
    @classmethod
    def _directions(cls, v):
        if not v:
            raise ValueError("at least one objective is needed")
        for name, o in v.items():
            if isinstance(o, str) and o not in DIRECTIONS:
                raise ValueError(f"{name}: {o!r} is not one of {', '.join(DIRECTIONS)}")
        return v

    @model_validator(mode="after")
    def _reference_names_the_objectives(self):
        if self.reference_point is not None:
            check_reference(self.reference_point, list(self.objectives))
        return self

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v):
        for metric, spec in v.items():
            parse_constraint(metric, spec)
        return v

    @field_validator("workload")
    @classmethod
    def _workload(cls, v):
        if isinstance(v, dict) and "name" not in v:
            raise ValueError("a workload mapping needs 'name' (a built-in or python: module:function)")
        return v

    # -- derived views ---------------------------------------------------------------------
    @property
    def workload_name(self) -> str:
        return self.workload if isinstance(self.workload, str) else self.workload["name"]

    @property
    def workload_options(self) -> dict[str, Any]:
        return {} if isinstance(self.workload, str) else {k: v for k, v in self.workload.items() if k != "name"}

    def objective_directions(self) -> dict[str, str]:
        return {k: (v if isinstance(v, str) else v.direction) for k, v in self.objectives.items()}

    def tracking_cfg(self) -> TrackingCfg | None:
        t = self.tracking
        if t is False or (isinstance(t, TrackingCfg) and not t.enabled):
            return None
        return t if isinstance(t, TrackingCfg) else TrackingCfg()


# -- loading ---------------------------------------------------------------------------------

# pydantic's wording for a value of the wrong kind, said as the other recipe errors say it
PLAIN = {
    "int_parsing": "{value!r} is not a whole number", "int_from_float": "{value!r} is not a whole number",
    "int_type": "{value!r} is not a whole number", "float_parsing": "{value!r} is not a number",
    "float_type": "{value!r} is not a number", "greater_than": "{value!r} is not allowed; it must be above {gt:g}",
    "greater_than_equal": "{value!r} is not allowed; it must be at least {ge:g}",
    "bool_parsing": "{value!r} is not true or false", "bool_type": "{value!r} is not true or false",
    "model_type": "{value!r} is not a mapping (key: value, ...)", "dict_type": "{value!r} is not a mapping (key: value, ...)",
}


def _format_errors(err: ValidationError) -> str:
    lines = []
    errors = err.errors()
    for e in errors:
        # a union's other branch (e.g. "tracking: true") says nothing useful when the value was a mapping
        if e["type"] == "bool_type" and isinstance(e.get("input"), dict) and len(errors) > 1:
            continue
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "literal[", "str", "dict",
                                                                           "TrackingCfg", "ObjectiveCfg", "bool")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = _model_at(e["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent else ""
            msg = f"unknown field; allowed here: {allowed}" if allowed else "unknown field"
        elif e["type"] == "literal_error":
            msg = f"{e['input']!r} is not one of {msg.split('Input should be ', 1)[-1]}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif e["type"] == "missing":
            msg = "required"
        elif e["type"] in PLAIN:
            msg = PLAIN[e["type"]].format(value=e.get("input"), **(e.get("ctx") or {}))
        lines.append(f"{loc or '(recipe)'}: {msg}")
    seen, out = set(), []
    for line in lines:  # unions report each branch; keep each message once
        if line not in seen:
            seen.add(line)
            out.append(line)
    return "\n".join(out)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for part in loc:
        f = model.model_fields.get(str(part))
        if f is None:
            return model if str(part) in ("TrackingCfg", "ObjectiveCfg") else None
        ann = f.annotation
        sub = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not sub:
            return None
        model = sub[0]
    return model


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Apply one ``--set a.b.c=value`` override (value parsed as YAML)."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {} if node.get(k) in (None, True, False) else node[k]
            if not isinstance(node[k], dict):
                raise RecipeError(f"--set {dotted}: {k} is not a mapping")
        node = node[k]
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: write key.path=value")
        k, v = item.split("=", 1)
        out.append((k.strip(), yaml.safe_load(v) if v.strip() else None))
    return out


def load_recipe(source: str | Path | dict, overrides: list[str] | None = None) -> tuple[Recipe, str]:
    """Read, override and validate a recipe; returns it with its original text."""
    base_dir = None
    if isinstance(source, dict):
        data, text = copy.deepcopy(source), yaml.safe_dump(source, sort_keys=False)
    else:
        path = Path(source)
        if not path.exists():
            raise RecipeError(f"recipe {path} does not exist")
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: {size / 2**20:.1f} MB; a recipe is at most {MAX_RECIPE_BYTES // 2**20} MB")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            line = path.read_bytes()[: e.start].count(b"\n") + 1
            raise RecipeError(f"{path}: not UTF-8 text (byte {e.start}, line {line}); save the recipe as UTF-8") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML: {_cap(str(e))}") from None
        base_dir = path.resolve().parent
    if not isinstance(data, dict):
        raise RecipeError("a recipe is a YAML mapping with name, workload, objectives, search, ...")
    if base_dir is not None and "name" not in data:  # a recipe file is named for its file unless it says otherwise
        stem = re.sub(r"[^A-Za-z0-9_.\-]+", "-", Path(source).stem).lstrip("_.-")
        if stem:
            data["name"] = stem
    unknown = [k for k in data if k not in Recipe.model_fields]
    if len(unknown) > MAX_UNKNOWN_KEYS:
        raise RecipeError(_cap(f"{len(unknown)} unknown top-level fields ({', '.join(map(str, unknown[:5]))}, ...); "
                               f"allowed: {', '.join(Recipe.model_fields)}"))
    for k, v in parse_overrides(overrides or []):
        set_path(data, k, v)
    if base_dir is not None:
        _anchor_paths(data, base_dir)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_cap(_format_errors(e))) from None
    recipe._base_dir = base_dir
    return recipe, text


MAX_RECIPE_BYTES = 2**20    # a recipe is a page of YAML; anything near this size is a mistake
MAX_UNKNOWN_KEYS = 20
MAX_MESSAGE = 2000


def _cap(msg: str, n: int = MAX_MESSAGE) -> str:
    """An error message of bounded length (a pathological recipe must not print megabytes)."""
    if len(msg) <= n:
        return msg
    lines, out = msg.splitlines(), []
    for line in lines:
        if sum(len(x) + 1 for x in out) + len(line) > n:
            break
        out.append(line[:n])
    return "\n".join(out) + f"\n... ({len(lines) - len(out)} more lines)"


def _anchor_paths(data: dict, base_dir: Path) -> None:
    """A relative ``workload.path`` means a file beside the recipe, wherever the command is run from."""
    wl = data.get("workload")
    if isinstance(wl, dict) and isinstance(wl.get("path"), str) and not Path(wl["path"]).expanduser().is_absolute():
        wl["path"] = str(base_dir / wl["path"])


def importable_recipe_dir(recipe: Recipe) -> None:
    """Let ``function:`` and ``python:`` name modules that sit beside the recipe file."""
    d = recipe._base_dir
    if d is not None and str(d) not in sys.path:
        sys.path.insert(0, str(d))


# -- building the pieces ---------------------------------------------------------------------

def build_workload(recipe: Recipe):
    """The recipe's workload, with objectives and constraints checked against its metrics."""
    from .workloads import make_workload

    importable_recipe_dir(recipe)
    opts = dict(recipe.workload_options)
    name = recipe.workload_name
    if recipe.space is not None:
        opts["space"] = recipe.space
    try:
        if "space" in opts and not name.startswith("python:"):
            from .workloads import WORKLOADS

            fn = WORKLOADS.entries.get(name) if name in WORKLOADS.names() else None
            if fn is not None and "space" not in inspect.signature(fn).parameters:
                raise RecipeError(f"space: workload {name!r} has a fixed space; remove 'space' from the recipe")
        wl = make_workload(name, **opts)
    except RecipeError:
        raise
    except SpaceError as e:
        raise RecipeError(f"space.{e}" if getattr(e, "param", None) else f"space: {e}") from None
    except TypeError as e:
        raise RecipeError(f"workload: {name}: {e}") from None
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise RecipeError(f"workload: {e}") from None
    wl = _compose(recipe, wl)
    errs = []
    for m in recipe.objectives:
        if wl.metrics and m not in wl.metrics:
            errs.append(f"objectives.{m}: {m!r} is not a metric of {wl.name} ({', '.join(wl.metrics)})")
    for m in recipe.constraints:
        if wl.metrics and m not in wl.metrics:
            errs.append(f"constraints.{m}: {m!r} is not a metric of {wl.name} ({', '.join(wl.metrics)})")
    if isinstance(recipe.search.initial, str) and not wl.baselines:
        errs.append(f"search.initial: {recipe.search.initial!r} seeds the workload's baselines; {wl.name} has none")
    for i, c in enumerate([] if isinstance(recipe.search.initial, str) else recipe.search.initial):
        try:
            wl.space.validate(c)
        except ValueError as e:
            errs.append(f"search.initial.{i}: {e}")
    if not recipe.search.algorithm.startswith("ng:"):  # Nevergrad's options never depend on the space; its import takes seconds
        from .engine.algorithms.base import make_algorithm

        try:
            make_algorithm(recipe.search.algorithm, **recipe.search.options).check_space(wl.space)
        except ValueError as e:
            errs.append(f"search.options: {e}")
    if errs:
        raise RecipeError("\n".join(errs))
    return wl


def _compose(recipe: Recipe, wl):
    """For model workloads: add the cost metrics the recipe asks for, measured on its targets."""
    from .compose import CompositionError, compose_workload

    objectives = {k: (v.model_dump(exclude_none=True) if isinstance(v, ObjectiveCfg) else {})
                  for k, v in recipe.objectives.items()}
    try:
        return compose_workload(wl, objectives, list(recipe.constraints), recipe.targets)
    except CompositionError as e:
        raise RecipeError(str(e)) from None
    except ValueError as e:  # a predictor that failed its held-out check, a bad target setting
        raise RecipeError(f"objectives: {e}") from None


def resolved_dict(recipe: Recipe) -> dict:
    return recipe.model_dump(mode="json", exclude_none=True)
