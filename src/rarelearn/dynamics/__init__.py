"""MD and steered MD on any ASE calculator."""

from rarelearn.dynamics.md import run_md
from rarelearn.dynamics.replicas import (
    BatchForceField,
    ReplicaForces,
    frame_by_frame,
    relax_replicas,
    run_smd_replicas,
)
from rarelearn.dynamics.smd import SMDSettings, SMDTrace, StartState, relax_start_state, run_smd
from rarelearn.dynamics.spring import MovingSpring
from rarelearn.dynamics.thermostats import Thermostat, draw_velocities, make_integrator

__all__ = [
    "BatchForceField",
    "MovingSpring",
    "ReplicaForces",
    "SMDSettings",
    "SMDTrace",
    "StartState",
    "Thermostat",
    "draw_velocities",
    "frame_by_frame",
    "make_integrator",
    "relax_replicas",
    "relax_start_state",
    "run_md",
    "run_smd",
    "run_smd_replicas",
]
