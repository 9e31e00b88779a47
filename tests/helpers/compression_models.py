"""A user's own model and data for the compression workload (``python: helpers.compression_models:tiny``)."""

import torch
from torch import nn

from tradeoff.workloads.models import digits_data


def tiny():
    d = digits_data(8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10)).eval()
    return {"model": model, "example_inputs": torch.from_numpy(d["x"][:1]), "val": (d["x_val"], d["y_val"]),
            "train": (d["x"], d["y"]), "calib": d["x"][:32], "info": {"split": "digits 8x8 30% held out"}}
