"""MD and steered MD on any ASE calculator."""

from rarelearn.dynamics.md import run_md
from rarelearn.dynamics.smd import SMDSettings, SMDTrace, StartState, relax_start_state, run_smd
from rarelearn.dynamics.spring import MovingSpring
from rarelearn.dynamics.thermostats import Thermostat, draw_velocities, make_integrator

__all__ = [
    "MovingSpring",
    "SMDSettings",
    "SMDTrace",
    "StartState",
    "Thermostat",
    "draw_velocities",
    "make_integrator",
    "relax_start_state",
    "run_md",
    "run_smd",
]
