"""Bearing defect frequencies from geometry and shaft speed.

A localised defect is struck once per roller pass, so the envelope of the vibration repeats at a
fixed multiple ("order") of the shaft speed. The orders follow from the geometry alone:

    BPFO = n/2 (1 - d/D cos a)            outer race (fixed), per shaft revolution
    BPFI = n/2 (1 + d/D cos a)            inner race (turns with the shaft)
    BSF  = D/d (1 - (d/D cos a)^2)        a ball defect hits both races every spin: 2 x ball spin

Defaults are the SKF 6205-2RS of the CWRU drive end, which give the orders CWRU publishes
(BPFI 5.4152, BPFO 3.5848, BSF 4.7135). Like CWRU, "BSF" here is twice the ball spin frequency.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

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
