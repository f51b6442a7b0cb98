"""Actors: a worker's handler for one message type, and the registry the runtime reads.

An actor is a plain function ``handle(message) -> list[next messages]`` registered for one
message type under a worker kind (the queue it is served from)::

    from workers.actor import actor
    from messages import Message, PlanOptimized

    @actor("optimizer", consumes="strike.requested")
    def optimize(message: Message) -> list[Message]:
        ref = store.put_json_artifact(solve(message.body))
        return [message.follow(PlanOptimized(optimization_ref=ref))]

The runtime (:mod:`workers.middleware`) makes every actor idempotent: its result is stored
under ``(strike_id, stage)`` and a redelivered message gets the stored messages back
without calling the handler again.  A handler raises
:class:`industriverse.errors.InfrastructureError` for what may succeed later (retried, bounded)
and anything else for what will not (the message is dead-lettered, the strike fails).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from industriverse.errors import BadInput
from messages.routing import WORKER_KINDS
from messages.types import MESSAGE_TYPES, TERMINAL_TYPES
from messages.envelope import Message

Handler = Callable[[Message], Sequence[Message] | None]


@dataclass(frozen=True)
class Actor:
    """``handle`` serves messages of type ``consumes`` from the queue of worker ``kind``.

    ``stage`` names the step in the idempotency key and in logs and metrics (default: the kind).
    """

    kind: str
    consumes: str
    handle: Handler
    stage: str

    def __call__(self, message: Message) -> Sequence[Message] | None:
        return self.handle(message)


class Registry:
    """Actors by message type (each type is consumed by exactly one actor)."""

    def __init__(self, actors: Iterable[Actor] = ()):
        self._by_type: dict[str, Actor] = {}
        for a in actors:
            self.add(a)

    def add(self, new: Actor) -> Actor:
        if new.consumes not in MESSAGE_TYPES or new.consumes in TERMINAL_TYPES:
            raise ValueError(f"actor {new.kind}/{new.stage}: cannot consume {new.consumes!r} (not a work message type)")
        old = self._by_type.get(new.consumes)
        if old is not None and old.handle is not new.handle:
            raise ValueError(f"{new.consumes!r} is already consumed by {old.kind}/{old.stage}")
        for other in self._by_type.values():
            if other.consumes != new.consumes and other.kind == new.kind and other.stage == new.stage:
                raise ValueError(
                    f"two actors of worker {new.kind!r} share stage {new.stage!r}: pass stage=... to tell them apart"
                )
        self._by_type[new.consumes] = new
        return new

    def actor(self, kind: str, *, consumes: str, stage: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator registering ``handle`` as the actor of ``kind`` for messages of type ``consumes``."""

        def register(handle: Handler) -> Handler:
            self.add(Actor(kind=kind, consumes=consumes, handle=handle, stage=stage or kind))
            return handle

        return register

    def for_kinds(self, kinds: Iterable[str]) -> list[Actor]:
        wanted = set(kinds)
        return [a for a in self._by_type.values() if a.kind in wanted]

    def kinds(self) -> list[str]:
        return sorted({a.kind for a in self._by_type.values()})

    def consumes(self) -> dict[str, tuple[str, ...]]:
        """``{kind: (message types...)}`` of the registered actors (the queues to declare)."""
        table: dict[str, tuple[str, ...]] = {}
        for a in self._by_type.values():
            table[a.kind] = table.get(a.kind, ()) + (a.consumes,)
        return table

    def __iter__(self) -> Iterator[Actor]:
        return iter(list(self._by_type.values()))

    def __len__(self) -> int:
        return len(self._by_type)


# The process-wide registry the concrete workers (workers/optimizer.py ...) register into.
registry = Registry()
actor = registry.actor


def load_actors(kinds: Iterable[str], reg: Registry | None = None) -> list[Actor]:
    """The actors of ``kinds`` ("all" = every worker kind), importing ``workers.<kind>`` as needed.

    Raises :class:`BadInput` for an unknown kind or a kind without any actor.
    """
    reg = registry if reg is None else reg
    kinds = list(kinds)
    if "all" in kinds:
        kinds = [k for k in kinds if k != "all"] + [k for k in WORKER_KINDS if k not in kinds]
    for kind in kinds:
        if kind not in WORKER_KINDS and kind not in reg.kinds():
            raise BadInput(None, "KIND", f"unknown worker kind {kind!r} (one of {', '.join(WORKER_KINDS)}, all)")
        if kind not in reg.kinds() and reg is registry:
            try:
                importlib.import_module(f"workers.{kind}")
            except ModuleNotFoundError as exc:
                if exc.name != f"workers.{kind}":
                    raise
        if kind not in reg.kinds():
            raise BadInput(None, "KIND", f"no actor is registered for worker kind {kind!r} (module workers.{kind})")
    return reg.for_kinds(kinds)
