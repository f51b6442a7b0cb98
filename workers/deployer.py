"""Deployer worker: ``plan.verified`` → signed capsule registered with the gateway, monitor armed → ``capsule.deployed``.

Registration is idempotent in the gateway (the same capsule content returns the same
activity), so a redelivered message never deploys twice; a strike whose ``expires_at`` has
passed is never registered (checked by the runtime and again just before registering).
"""
from __future__ import annotations

from industriverse.fleet import store
from industriverse.trust.capsule import pack_capsule
from industriverse.operate.gateway import CapsuleGatewayService
from industriverse.operate.monitor import arm_monitor
from industriverse.fleet.rundir import bundle_files
from messages import CapsuleDeployed, Message, PlanVerified
from workers.actor import actor
from workers.middleware import check_expiry
from workers.scratch import new_run_dir, write_scratch_run


@actor("deployer", consumes="plan.verified")
def deploy_capsule(message: Message) -> list[Message]:
    body: PlanVerified = message.body
    run_dir = new_run_dir(message, "capsules")
    write_scratch_run(run_dir, body)
    manifest = pack_capsule(run_dir)
    gateway = CapsuleGatewayService()
    check_expiry(message, "deployer")  # again, after the packing: the last moment before anything goes live
    activity_id = gateway.register(manifest.parent)
    arm_monitor(gateway, manifest.parent, activity_id)
    capsule_id = gateway.get_activity(activity_id)["capsule_id"]
    capsule_ref = store.put_json_artifact(bundle_files(manifest.parent))
    return [message.follow(CapsuleDeployed(
        optimization_ref=body.optimization_ref, simulation_ref=body.simulation_ref, verdict_ref=body.verdict_ref,
        proof_ref=body.proof_ref, capsule_id=capsule_id, activity_id=activity_id, capsule_ref=capsule_ref,
    ))]
