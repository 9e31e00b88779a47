"""tradeoff: the Pareto front of a model's quality against its real cost on real hardware.

``search`` is imported eagerly when its libraries are present; everything else on first use, so
``tradeoff.hardware`` also runs where the search's libraries are missing (a bare GPU machine).
"""

from importlib import import_module

from .core.version import __version__  # noqa: F401

_EXPORTS = {
    "search": ".api", "compare": ".api", "load_front": ".api",
    "Space": ".spaces.space", "SpaceError": ".spaces.space",
    "Choice": ".spaces.params", "Int": ".spaces.params", "Float": ".spaces.params", "Bits": ".spaces.params",
    "Mask": ".spaces.params",
    "Front": ".engine.front", "Trial": ".core.trial", "TrialError": ".engine.study", "Study": ".engine.study",
    "Objective": ".engine.objectives", "Constraint": ".engine.objectives",
    "Algorithm": ".engine.algorithms.base", "make_algorithm": ".engine.algorithms.base",
    "algorithm_names": ".engine.algorithms.base",
    "Workload": ".workloads", "make_workload": ".workloads", "Artifact": ".hardware.base",
    "make_target": ".hardware.base", "TrialState": ".core.trial", "compression": ".workloads.compression",
    "caching": ".workloads.caching", "timm_family": ".workloads.model_family", "cached": ".spaces.cache_hooks",
    "supernet": ".workloads.ofa", "supernet_workload": ".workloads.ofa", "load_supernet": ".workloads.supernet",
    "plot_front": ".tracking.plots", "plot_hypervolume": ".tracking.plots",
}
__all__ = sorted(_EXPORTS)


try:  # the search API; absent libraries (a bare GPU machine) leave tradeoff.hardware usable
    from .api import search  # noqa: E402,F401  (binds tradeoff.search to the function, not the package)
except ImportError:  # pragma: no cover - exercised on machines without the search libraries
    pass


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tradeoff' has no attribute {name!r}")


def __dir__():
    return __all__ + ["__version__"]
