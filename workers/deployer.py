"""Deployer worker: ``plan.verified`` → signed capsule registered with the gateway, monitor armed → ``capsule.deployed``.

Registration is idempotent in the gateway (the same capsule content returns the same
activity), so a redelivered message never deploys twice; a strike whose ``expires_at`` has
passed is never registered (checked by the runtime and again just before registering).

A capsule's version comes from its proof's time in milliseconds, so two strikes of one client in
a fleet can pack the same number; the one that registers second is re-packed with the next free
number (:func:`pack_and_register`).  The sequence of numbers tried is the same on a redelivery,
so the redelivered strike finds its own registration.
"""
from __future__ import annotations

from industriverse.fleet import store
from industriverse.trust.capsule import pack_capsule
from industriverse.operate.gateway import CapsuleGatewayService, VersionTaken
from industriverse.operate.monitor import arm_monitor
from industriverse.fleet.rundir import bundle_files, write_documents
from messages import CapsuleDeployed, Message, PlanVerified
from workers.actor import actor
from workers.middleware import check_expiry
from workers.scratch import new_run_dir


@actor("deployer", consumes="plan.verified")
def deploy_capsule(message: Message) -> list[Message]:
    body: PlanVerified = message.body
    run_dir = new_run_dir(message, "capsules")
    optimization = store.get_json_artifact(body.optimization_ref)
    # the run's documents beside the capsule, all but the simulation: only its bands are packed, from memory
    write_documents(run_dir, {"request": optimization["request"], "optimization": optimization,
                              "verdict": store.get_json_artifact(body.verdict_ref),
                              "proof": store.get_json_artifact(body.proof_ref)})
    simulation = store.get_json_artifact(body.simulation_ref)
    gateway = CapsuleGatewayService()
    # the expiry again after the packing: the last moment before anything goes live
    manifest, activity_id = pack_and_register(gateway, run_dir, before=lambda: check_expiry(message, "deployer"),
                                              simulation=simulation)
    arm_monitor(gateway, manifest.parent, activity_id)
    capsule_id = gateway.get_activity(activity_id)["capsule_id"]
    capsule_ref = store.put_json_artifact(bundle_files(manifest.parent))
    return [message.follow(CapsuleDeployed(
        optimization_ref=body.optimization_ref, simulation_ref=body.simulation_ref, verdict_ref=body.verdict_ref,
        proof_ref=body.proof_ref, capsule_id=capsule_id, activity_id=activity_id, capsule_ref=capsule_ref,
    ))]


VERSION_TRIES = 20  # strikes of one capsule whose proofs share a millisecond (a fleet runs a few at once)


def pack_and_register(gateway: CapsuleGatewayService, run_dir, before=None, simulation: dict | None = None):
    """Pack ``run_dir``'s capsule and register it; ``(manifest path, deployment activity ID)``.

    Where its version number is registered with other content (:class:`VersionTaken`), the capsule is
    packed again with the next number, up to :data:`VERSION_TRIES` numbers.  ``before()`` runs before
    each registration (the expiry check); ``simulation``: as :func:`pack_capsule` takes it."""
    version = None
    for attempt in range(VERSION_TRIES):
        manifest = pack_capsule(run_dir, version=version, simulation=simulation)
        if before is not None:
            before()
        try:
            return manifest, gateway.register(manifest.parent)
        except VersionTaken as taken:
            if attempt == VERSION_TRIES - 1:
                raise
            version = taken.version + 1
    raise AssertionError("unreachable")
