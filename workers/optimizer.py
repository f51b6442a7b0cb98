"""Optimizer worker: ``strike.requested`` → map the constraint, solve, ``plan.optimized``."""
from __future__ import annotations

from industriverse.fleet import store
from industriverse.model.mapping import map_constraint
from industriverse.plan.optimize import optimize_with_backoff
from messages import Message, PlanOptimized, StrikeRequested
from workers.actor import actor


def plan_for(request: StrikeRequested) -> dict:
    """The optimization JSON of one request (the envelope tightened by ``backoff_k`` noise back-offs).

    When the tightened envelope is infeasible but the client's own envelope is not, the plan is
    made without back-off and says so (``backoff_dropped``): the shield's chance constraint then
    decides, on the simulated ensemble, whether the plan is safe enough.
    """
    problem = map_constraint(request.domain, request.constraint, file="strike.requested constraint")
    return optimize_with_backoff(problem, request.backoff_k, method=request.method, seed=request.seed or 0)


@actor("optimizer", consumes="strike.requested")
def optimize_plan(message: Message) -> list[Message]:
    body: StrikeRequested = message.body
    # record_strike fills in who and what (keeping any status); update_strike moves it forward
    store.record_strike(message.strike_id, contract_id=message.contract_id, domain=body.domain)
    store.update_strike(message.strike_id, status="running")
    doc = plan_for(body)
    doc["backoff_k"] = body.backoff_k
    doc["round"] = message.round
    return [message.follow(PlanOptimized(optimization_ref=store.put_json_artifact(doc)))]
