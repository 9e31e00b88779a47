"""Accuracy of the deployed artifact: its ONNX bytes in an ONNX Runtime session over a held-out split.

The bytes scored are the bytes timed: a quantized model is judged as it would run, not as the
float model it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..hardware.base import TargetError
from . import Evaluator, TrialError, register_evaluator


@register_evaluator("accuracy")
class Accuracy(Evaluator):
    """``accuracy`` (top-1 over ``x``, ``y``) and ``val_n``; the split is described by ``split``."""

    name = "accuracy"
    directions = {"accuracy": "maximize"}

    def __init__(self, x: np.ndarray, y: np.ndarray, split: str = "held-out", batch: int = 256, threads: int = 1):
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"val: {len(x)} inputs and {len(y)} labels; give as many of each, at least one")
        self.x, self.y = np.ascontiguousarray(x, dtype=np.float32), np.asarray(y)
        self.split, self.batch, self.threads = split, int(batch), int(threads)

    def __call__(self, artifact, context: Mapping[str, Any] | None = None) -> dict[str, float]:
        import onnxruntime as ort

        try:
            blob = artifact.onnx_bytes()
        except TargetError as e:
            raise TrialError(f"accuracy: {e}") from e
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            try:
                logits = self._logits(sess, name, self.batch)
            except Exception:
                logits = self._logits(sess, name, 1)
        except Exception as e:
            raise TrialError(f"accuracy: onnxruntime: {str(e).strip().splitlines()[0][:300]}") from None
        acc = float((logits.reshape(len(self.y), -1).argmax(1) == self.y).mean())
        return {"accuracy": acc, "val_n": float(len(self.y))}

    def _logits(self, sess, name: str, batch: int) -> np.ndarray:
        return np.concatenate([sess.run(None, {name: self.x[i:i + batch]})[0] for i in range(0, len(self.x), batch)])

    def __repr__(self) -> str:
        return f"Accuracy(n={len(self.y)}, split={self.split!r})"
