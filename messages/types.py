"""The message bodies of the value loop (DESIGN.md §2), schema version 1.

Large results never travel inline: a body carries ``*_ref`` fields, the SHA-256 of a JSON
artifact in the store (``industriverse.fleet.store.put_json_artifact`` / ``get_json_artifact``).

Cascade::

    strike.requested -> plan.optimized -> plan.simulated -> plan.verified -> capsule.deployed
                                                        \\-> plan.rejected    |
                         strike.completed.<id> <--------------------------------/
                         strike.failed.<id>   <- any stage, on an error it cannot retry
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from messages.envelope import Body, Sha256


class StrikeRequested(Body):
    """Run the loop once for a client constraint (published by the CLI or the regiment)."""

    TYPE: ClassVar[str] = "strike.requested"

    domain: str = Field(min_length=1, description="shipped domain name (hvac, cold_storage, microgrid) or a user network")
    constraint: dict[str, Any] = Field(description="the client constraint JSON, as given")
    method: Literal["auto", "idf", "lp"] = Field("auto", description="optimizer method")
    seed: int | None = Field(None, description="seed of the optimizer and the simulation ensemble")
    backoff_k: float = Field(0.0, ge=0, description="envelope back-off in noise standard deviations")
    retry: int = Field(0, ge=0, description="re-optimization round after a shield rejection (0 = first try)")
    output_dir: str | None = Field(None, description="run directory to write (default runs/<strike_id>/)")
    expires_at: AwareDatetime | None = Field(
        None, description="UTC deadline: a stage that would start later fails the strike as expired, and nothing is "
                          "deployed (the client's --timeout; None: no deadline)")


class PlanOptimized(Body):
    """The optimizer's result is stored; the simulator runs it."""

    TYPE: ClassVar[str] = "plan.optimized"

    optimization_ref: Sha256 = Field(description="artifact: optimization JSON")


class PlanSimulated(Body):
    """The plan and the baseline ensembles are stored; the shield verifies them."""

    TYPE: ClassVar[str] = "plan.simulated"

    optimization_ref: Sha256 = Field(description="artifact: optimization JSON")
    simulation_ref: Sha256 = Field(description="artifact: simulation JSON")


class _Verdict(Body):
    optimization_ref: Sha256 = Field(description="artifact: optimization JSON")
    simulation_ref: Sha256 = Field(description="artifact: simulation JSON")
    verdict_ref: Sha256 = Field(description="artifact: verdict JSON")
    proof_ref: Sha256 = Field(description="artifact: signed proof JSON")
    reasons: list[str] = Field(default_factory=list, description="failed checks, one line each (empty when passed)")


class PlanVerified(_Verdict):
    """Every shield check passed; the deployer packs and deploys the capsule."""

    TYPE: ClassVar[str] = "plan.verified"


class PlanRejected(_Verdict):
    """A shield check failed; nothing is deployed.  ``reasons`` names the failed checks."""

    TYPE: ClassVar[str] = "plan.rejected"


class CapsuleDeployed(Body):
    """The signed capsule is registered with the gateway; the reporter writes the value report."""

    TYPE: ClassVar[str] = "capsule.deployed"

    optimization_ref: Sha256
    simulation_ref: Sha256
    verdict_ref: Sha256
    proof_ref: Sha256
    capsule_id: str = Field(min_length=1)
    activity_id: str = Field(min_length=1, description="the gateway's deployment activity ID")
    capsule_ref: Sha256 | None = Field(None, description="artifact: the capsule (manifest and files)")
    capsule_path: str | None = Field(None, description="capsule directory on a shared file system")

    @model_validator(mode="after")
    def _capsule_located(self) -> "CapsuleDeployed":
        if self.capsule_ref is None and self.capsule_path is None:
            raise ValueError("capsule.deployed needs capsule_ref or capsule_path")
        return self


class StrikeCompleted(Body):
    """The strike ended: deployed (with the activity ID) or rejected by the shield."""

    TYPE: ClassVar[str] = "strike.completed"

    outcome: Literal["deployed", "rejected"]
    activity_id: str | None = Field(None, description="deployed activity ID (None when rejected)")
    value_ref: Sha256 | None = Field(None, description="artifact: value.json")
    report_ref: Sha256 | None = Field(None, description="artifact: bundle of the report directory (report.md|html|pdf, plots, value.json)")
    report_paths: dict[str, str] = Field(default_factory=dict, description="{'md'|'html'|'pdf'|'value': path}")
    run_dir: str | None = None
    optimization_ref: Sha256 | None = None
    simulation_ref: Sha256 | None = None
    verdict_ref: Sha256 | None = None
    proof_ref: Sha256 | None = None
    capsule_id: str | None = None
    capsule_ref: Sha256 | None = None
    reasons: list[str] = Field(default_factory=list, description="the shield's reasons when rejected")

    @model_validator(mode="after")
    def _deployed_has_activity(self) -> "StrikeCompleted":
        if self.outcome == "deployed" and not self.activity_id:
            raise ValueError("a deployed strike.completed needs activity_id")
        return self


class StrikeFailed(Body):
    """A stage met an error it cannot retry; ``reason`` says what went wrong."""

    TYPE: ClassVar[str] = "strike.failed"

    stage: str = Field(description="the stage (worker kind) that failed")
    reason: str = Field(description="one line")
    error: str | None = Field(None, description="class of the error (BadInput, Infeasible, InfrastructureError, InvalidMessage, ...)")
    exit_code: int = Field(3, ge=1, le=125, description="exit code a waiting script should end with (DESIGN.md §4: 2 bad input, 1 infeasible, 3 infrastructure/other)")


BODY_MODELS: tuple[type[Body], ...] = (
    StrikeRequested,
    PlanOptimized,
    PlanSimulated,
    PlanVerified,
    PlanRejected,
    CapsuleDeployed,
    StrikeCompleted,
    StrikeFailed,
)
# (type, schema_version) -> body model: what decode() accepts.
BODIES: dict[tuple[str, int], type[Body]] = {(m.TYPE, m.SCHEMA_VERSION): m for m in BODY_MODELS}
MESSAGE_TYPES: tuple[str, ...] = tuple(m.TYPE for m in BODY_MODELS)
# Work before the deployment: refused once the strike's expires_at has passed.  After it
# (capsule.deployed, plan.rejected) the strike is committed and its report is written anyway.
EXPIRING_TYPES: frozenset[str] = frozenset({StrikeRequested.TYPE, PlanOptimized.TYPE, PlanSimulated.TYPE, PlanVerified.TYPE})
# Types that end a strike: nobody consumes them as work; a waiting client binds to them.
TERMINAL_TYPES: frozenset[str] = frozenset({StrikeCompleted.TYPE, StrikeFailed.TYPE})
