"""Bearing defect frequencies from geometry and shaft speed.

A localised defect is struck once per roller pass, so the envelope of the vibration repeats at a
fixed multiple ("order") of the shaft speed. The orders follow from the geometry alone:

    BPFO = n/2 (1 - d/D cos a)            outer race (fixed), per shaft revolution
    BPFI = n/2 (1 + d/D cos a)            inner race (turns with the shaft)
    BSF  = D/d (1 - (d/D cos a)^2)        a ball defect hits both races every spin: 2 x ball spin

A bearing is given by name from BEARINGS (the two CWRU publishes, drive end and fan end, whose
orders match its published ones: BPFI 5.4152 / 4.9469, BPFO 3.5848 / 3.0530, BSF 4.7135 / 3.9874) or
by its numbers from the maker's datasheet, with any name. The default is the CWRU drive-end bearing,
for the shipped records only: declare your own (configs/anomaly-pump7.yaml shows how).
Like CWRU, "BSF" here is twice the ball spin frequency.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NUMBERS = ("n_balls", "ball_diameter", "pitch_diameter", "contact_angle_deg")
# name -> (n_balls, ball diameter, pitch diameter [inch], contact angle [deg]), as CWRU publishes them
BEARINGS = {
    "SKF 6205-2RS": (9, 0.3126, 1.537, 0.0),  # CWRU drive end
    "SKF 6203-2RS": (8, 0.2656, 1.122, 0.0),  # CWRU fan end
}

# Human names a maintenance engineer reads, keyed by the order's short name.
DEFECT_NAMES = {"BPFI": "inner-race", "BPFO": "outer-race", "BSF": "ball"}


class BearingGeometry(BaseModel):
    """Rolling-element count, ball and pitch diameters (any one unit), contact angle in degrees."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "SKF 6205-2RS"
    n_balls: int = Field(9, ge=3)
    ball_diameter: float = Field(0.3126, gt=0)  # inch
    pitch_diameter: float = Field(1.537, gt=0)  # inch
    contact_angle_deg: float = Field(0.0, ge=0, lt=90)

    @model_validator(mode="before")
    @classmethod
    def _by_name_or_numbers(cls, data: Any) -> Any:
        """A catalogue name fills the numbers; numbers alone are named "custom"; an unknown name
        without its numbers lists the known names."""
        if not isinstance(data, dict):
            return data
        given = {k for k in NUMBERS if data.get(k) is not None}
        name = data.get("name")
        if name is None:
            return data if not given else {"name": "custom", **data}
        if name in BEARINGS:
            return dict(zip(NUMBERS, BEARINGS[name], strict=True)) | data
        if given != set(NUMBERS) - {"contact_angle_deg"} and given != set(NUMBERS):
            missing = sorted(set(NUMBERS) - given - {"contact_angle_deg"})
            raise ValueError(
                f"unknown bearing {name!r} and no {', '.join(missing)}: name one of "
                f"{sorted(BEARINGS)} or give n_balls, ball_diameter, pitch_diameter (and contact_angle_deg) "
                "from its datasheet"
            )
        return data


def defect_orders(geometry: BearingGeometry) -> dict[str, float]:
    """Defect frequencies as multiples of the shaft speed: {"BPFI": 5.4152, "BPFO": 3.5848, "BSF": 4.7135}."""
    ratio = (
        geometry.ball_diameter / geometry.pitch_diameter * math.cos(math.radians(geometry.contact_angle_deg))
    )
    half = geometry.n_balls / 2
    return {
        "BPFI": half * (1 + ratio),
        "BPFO": half * (1 - ratio),
        "BSF": geometry.pitch_diameter / geometry.ball_diameter * (1 - ratio**2),
    }


def defect_frequencies(geometry: BearingGeometry, rpm: float) -> dict[str, float]:
    """Defect frequencies in Hz at a shaft speed of `rpm` revolutions per minute."""
    shaft_hz = rpm / 60.0
    return {name: order * shaft_hz for name, order in defect_orders(geometry).items()}
