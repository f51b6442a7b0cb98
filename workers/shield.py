"""Shield worker: ``plan.simulated`` → checks and signed proof → ``plan.verified`` or ``plan.rejected``.

A rejection that a larger envelope back-off can cure (the chance constraint, the envelope) is
re-requested as the next round of the same strike, up to :data:`MAX_ROUNDS` re-optimizations,
before it is reported as rejected.
"""
from __future__ import annotations

from industriverse.fleet import store
from industriverse.trust.proof import build_proof
from industriverse.verify.shield import check_plan
from messages import Message, PlanRejected, PlanSimulated, PlanVerified, StrikeRequested
from workers.actor import actor

MAX_ROUNDS = 2              # re-optimizations after the first try
BACKOFF_GROWTH = 1.5        # each round multiplies the noise back-off by this
CURABLE_BY_BACKOFF = {"chance_constraint", "envelope", "envelope_between_samples"}


def next_round(optimization: dict, failed: list[str], round_: int, expires_at=None) -> StrikeRequested | None:
    """The re-request of a rejected plan with a larger back-off, or None when it would not help.

    It keeps the strike's deadline ``expires_at``: a later round is the same strike."""
    if round_ >= MAX_ROUNDS or not failed or not set(failed) <= CURABLE_BY_BACKOFF:
        return None
    if optimization.get("backoff_dropped"):
        return None  # a larger back-off is infeasible already: re-optimizing cannot cure it
    previous = float(optimization.get("backoff_k") or 0.0)
    return StrikeRequested(
        domain=optimization["domain"], constraint=optimization["request"], method=optimization.get("method", "auto"),
        seed=optimization.get("seed"), backoff_k=max(1.0, previous * BACKOFF_GROWTH), retry=round_ + 1,
        expires_at=expires_at,
    )


@actor("shield", consumes="plan.simulated")
def verify_plan(message: Message) -> list[Message]:
    body: PlanSimulated = message.body
    optimization = store.get_json_artifact(body.optimization_ref)
    simulation = store.get_json_artifact(body.simulation_ref)
    verdict = check_plan(optimization, simulation)
    proof = build_proof(strike_id=message.strike_id, optimization=optimization, simulation=simulation, shield=verdict)
    failed = [c["name"] for c in verdict["checks"] if not c["passed"]]
    reasons = [f"{c['name']}: {c.get('detail') or ''}".rstrip(": ") for c in verdict["checks"] if not c["passed"]]
    refs = dict(optimization_ref=body.optimization_ref, simulation_ref=body.simulation_ref,
                verdict_ref=store.put_json_artifact(verdict), proof_ref=store.put_json_artifact(proof))
    if verdict["passed"]:
        return [message.follow(PlanVerified(**refs))]
    retry = next_round(optimization, failed, message.round, message.expires_at)
    if retry is not None:
        return [Message.start(retry, strike_id=message.strike_id, contract_id=message.contract_id)]
    return [message.follow(PlanRejected(**refs, reasons=reasons))]
