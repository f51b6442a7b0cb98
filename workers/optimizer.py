"""Optimizer worker: ``strike.requested`` → map the constraint, solve, ``plan.optimized``."""
from __future__ import annotations

from industriverse import store
from industriverse.mapping import map_constraint
from industriverse.optimize import optimize
from industriverse.tracking import noise_backoff
from messages import Message, PlanOptimized, StrikeRequested
from workers.actor import actor


def plan_for(request: StrikeRequested) -> dict:
    """The optimization JSON of one request (the envelope tightened by ``backoff_k`` noise back-offs)."""
    problem = map_constraint(request.domain, request.constraint, file="strike.requested constraint")
    if request.backoff_k > 0:
        problem = problem.with_backoff(noise_backoff(problem, request.backoff_k))
    return optimize(problem, method=request.method, seed=request.seed or 0)


@actor("optimizer", consumes="strike.requested")
def optimize_plan(message: Message) -> list[Message]:
    body: StrikeRequested = message.body
    store.record_strike(message.strike_id, contract_id=message.contract_id, domain=body.domain, status="running")
    doc = plan_for(body)
    doc["backoff_k"] = body.backoff_k
    doc["round"] = message.round
    return [message.follow(PlanOptimized(optimization_ref=store.put_json_artifact(doc)))]
