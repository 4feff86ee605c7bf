"""shg_model: the Stacked Hourglass Network in pure PyTorch.

Layers (``layers``), the stacked network and its frozen config (``hourglass``), the
intermediate-supervision loss (``loss``), heatmap decoding and flip averaging (``decode``).
Imports only torch; nothing from the rest of the project, no ray, no mlflow; does no I/O and
moves nothing between devices. See README.md.
"""

from shg_model.decode import check_flip_pairs, decode, flip_average
from shg_model.hourglass import HourglassConfig, StackedHourglass, parameter_count
from shg_model.layers import Residual
from shg_model.loss import heatmap_loss

__all__ = [
    "HourglassConfig",
    "Residual",
    "StackedHourglass",
    "check_flip_pairs",
    "decode",
    "flip_average",
    "heatmap_loss",
    "parameter_count",
]
