"""tradeoff: the Pareto front of a model's quality against its real cost on real hardware."""

from .api import search
from .search.algorithms.base import Algorithm, algorithm_names, make_algorithm
from .search.front import Front
from .search.objectives import Constraint, Objective
from .search.study import Study, TrialError
from .search.trial import Trial
from .spaces.params import Bits, Choice, Float, Int, Mask
from .spaces.space import Space, SpaceError

__all__ = [
    "search", "Space", "SpaceError", "Choice", "Int", "Float", "Bits", "Mask", "Front", "Trial", "TrialError",
    "Objective", "Constraint", "Study", "Algorithm", "make_algorithm", "algorithm_names",
]
__version__ = "0.1.0"
