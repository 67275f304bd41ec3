"""What every detector shares: scikit-learn-style parameters and the finding it reports.

Parameters are set in ``__init__`` (stored under their own names, nothing else done there) and
validated on use, as in scikit-learn; ``set_params`` lets sliders change them while the detector
runs. Online use follows River (``learn_one``/``score_one``); batch methods sit beside them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's verdict that one reading (or the gap before it) is anomalous."""

    device_id: str
    device_type: str
    kind: str
    """spike, level_shift, drift, stuck, dropout, counter_surge, counter_reset, location_jump,
    noise_burst, or 'outlier' for model-based detectors that cannot name a cause."""
    metric: str | None
    """The metric at fault ('location' for position, None for silence)."""
    score: float
    """Anomaly score in [0, 1]."""
    ts: datetime
    seq: int
    observed: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    detector: str = ""


class ParamsMixin:
    """``get_params``/``set_params`` from the ``__init__`` signature, validated on every change."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The detector's parameters by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change parameters (at run time too); refused as a whole if any is invalid."""
        allowed = self._param_names()
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no parameter {', '.join(unknown)}; "
                f"its parameters are {', '.join(allowed)}"
            )
        old = self.get_params()
        for name, value in params.items():
            setattr(self, name, value)
        try:
            self._check_params()
        except ValueError:
            for name, value in old.items():
                setattr(self, name, value)
            raise
        self._params_changed(set(params))
        return self

    def _check_params(self) -> None:
        """Raise ValueError naming the bad parameter and what is allowed."""

    def _params_changed(self, names: set[str]) -> None:
        """React to a run-time change (e.g. resize windows); state is kept where it can be."""


def check_range(name: str, value: Any, low: float, high: float, integer: bool = False) -> None:
    """Raise a ValueError that says what is wrong with a numeric parameter and what is allowed."""
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"{name}={value!r}: it must be {kind} from {low:g} to {high:g}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range: allowed {low:g} to {high:g}")
