"""Simulator worker: ``plan.optimized`` → plan and baseline ensembles on the same draws, ``plan.simulated``."""
from __future__ import annotations

from industriverse.fleet import store
from industriverse.plan.optimize import load_plan
from industriverse.verify.simulate import simulate
from messages import Message, PlanOptimized, PlanSimulated
from workers.actor import actor


@actor("simulator", consumes="plan.optimized")
def simulate_plan(message: Message) -> list[Message]:
    body: PlanOptimized = message.body
    optimization = store.get_json_artifact(body.optimization_ref)
    problem, u = load_plan(optimization)
    simulation = simulate(problem, u, seed=problem.constraint.uncertainty.seed)
    ref = store.put_json_artifact(simulation)
    return [message.follow(PlanSimulated(optimization_ref=body.optimization_ref, simulation_ref=ref))]
