"""Declaring a saga: ordered steps, each an action and the compensation that undoes it.

A step's action must be idempotent for ``ctx.key(step)`` (the same key on every attempt of the
same run and generation), and its compensation must accept both "already undone" and "never
happened": a compensation may run after an action that timed out after its side effect, or twice.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Result = dict[str, Any]


@dataclass(frozen=True)
class SagaContext:
    run_id: uuid.UUID
    user_id: int
    stream_id: int | None
    input: dict[str, Any]
    generation: int
    results: dict[str, Result] = field(default_factory=dict)  # results of the steps done so far, by name

    def key(self, step: str) -> str:
        """The idempotency key of a step's effect in this run (a retry after compensation is a new generation)."""
        return f"saga:{self.run_id}:{step}:{self.generation}"


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    action: Callable[[SagaContext], Result]
    compensation: Callable[[SagaContext], None] | None = None  # finds the action's result in ctx.results


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]

    def step(self, index: int) -> Step:
        return self.steps[index]


_registry: dict[str, SagaDefinition] = {}


def register_saga(definition: SagaDefinition) -> SagaDefinition:
    _registry[definition.name] = definition
    return definition


def saga_definition(name: str) -> SagaDefinition:
    return _registry[name]
