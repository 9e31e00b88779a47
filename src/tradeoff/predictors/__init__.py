"""Cheap stand-ins for expensive objectives: fit/predict (mean, std) and their measured quality."""

from .models import Predictor, make_predictor, predictor_names
from .quality import cross_validated, quality

__all__ = ["Predictor", "make_predictor", "predictor_names", "quality", "cross_validated"]
