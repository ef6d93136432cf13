"""What every role's step shares: its subordinates, asking its model, its usage."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from django.db import connection
from django.db.models import QuerySet
from pydantic import BaseModel

from ...errors import AttemptError
from ...llm.providers import llm_complete
from ...llm.reply import LlmReply
from ...llm.schemas import parse_json, paths_of, schema_instructions, wire_schema
from ...models import Agent
from ...services.budgets import attempt_spend, run_budget_stop
from ...stores import statements
from ..files import write_json
from ..types import StepContext

S = TypeVar("S", bound=BaseModel)

PRIORITY_NORMAL = 5
GARBAGE = "<<injected fault: bad_output>> this reply is not JSON {"


def subordinates(agent: Agent, role: str) -> QuerySet[Agent]:
    return Agent.objects.filter(parent=agent, role=role, enabled=True).order_by(
        "position", "agent_id"
    )


def subordinate_ids(agent: Agent, role: str) -> list[str]:
    """Return the ids of ``agent``'s enabled subordinates of ``role``, in tree order."""
    rows = statements.rows_values(
        Agent,
        ["agent_id"],
        equal={"parent": agent.agent_id, "role": role, "enabled": True},
        order=["position", "agent_id"],
    )
    return [agent_id for (agent_id,) in rows]


# The most a reply may take, per schema: a bounded reply (see llm.schemas.wire_schema)
# fits; a model that loops is cut off here instead of streaming until the read timeout.
MAX_TOKENS = {
    "ArchitectPlan": 700,
    "DirectorPlan": 450,
    "ManagerPlan": 450,
    "ProgrammerOutput": 700,
}
# Working on a repository, a Programmer writes real files or diffs, not placeholders.
MAX_TOKENS_REPO = {"ProgrammerOutput": 4000}


def ask(
    ctx: StepContext,
    schema: type[S],
    duty: str,
    payload: dict[str, Any],
    *,
    choices: dict[str, list[str]] | None = None,
    repo: bool = False,
) -> tuple[S, LlmReply]:
    """Ask the attempt's model for ``schema``; beats map onto progress 0.1..0.8.

    The reply's schema goes along as its response format (``choices`` narrows the ids
    it may name; ``repo``: the work is on a repository); what the call spent is added
    to the run, which stops when it passes a budget; the reply is validated
    (``bad_output`` when it does not fit). The messages are kept in the run's
    ``prompts/<job>.<attempt>.json``: what the model was shown, for a person to read.
    """
    instructions = schema_instructions(schema, repo=repo)
    messages = [
        {
            "role": "system",
            "content": f"You are {ctx.agent.agent_id}, {duty}\n\n{instructions}",
        },
        {
            "role": "user",
            "content": "Input:\n```json\n"
            + json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":"))
            + "\n```",
        },
    ]

    def beat(progress: float, message: str) -> None:
        ctx.beat(0.1 + 0.7 * progress, message)

    write_json(ctx.artifacts_dir / "prompts" / f"{ctx.job.pk}.{ctx.attempt.number}.json", messages)
    ctx.beat(0.1, f"asking {ctx.model or 'the model'} for a {schema.__name__}")
    if not connection.in_atomic_block:
        # The call takes seconds to minutes: hold no idle database connection meanwhile
        # (a hundred calls in flight would hold a hundred).
        connection.close()
    name = schema.__name__
    reply = llm_complete(
        ctx.model,
        messages,
        beat=beat,
        schema=wire_schema(name, choices, repo=repo),
        max_tokens=(MAX_TOKENS_REPO if repo else MAX_TOKENS).get(name) or MAX_TOKENS.get(name),
    )
    tokens = reply.tokens_in + reply.tokens_out
    if tokens or reply.cost_usd:
        breach = attempt_spend(ctx.attempt, tokens=tokens, cost_usd=reply.cost_usd)
        if breach:
            run_budget_stop(ctx.run.pk, breach=breach)
            raise AttemptError("budget_exceeded", f"Budget exceeded: {breach}")
    text = GARBAGE if ctx.fault == "bad_output" else reply.text
    return parse_json(text, schema), reply


def card_paths(card: dict[str, Any]) -> list[str]:
    """Return the paths a card names (files, expected artifacts, inputs), in order.

    They become the only paths the role's model may write (``wire_schema``'s ``file``):
    a lane's Programmers write the files its plan expects, not ones they invent.
    """
    paths: list[str] = []
    for key in ("files", "expected_artifacts", "inputs"):
        for path in paths_of(card.get(key)):
            if path not in paths:
                paths.append(path)
    return paths[:20]


def usage(reply: LlmReply) -> dict[str, Any]:
    return {
        "produced_by": reply.produced_by,
        "model": reply.model,
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "tokens": reply.tokens_in + reply.tokens_out,
        "cost_usd": reply.cost_usd,
    }


def lane_of(ctx: StepContext) -> str:
    lane = ctx.job.lane or str(ctx.job.card.get("lane") or "") or ctx.agent.lane
    return lane if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,31}", lane) else "misc"


def remap(wanted: str, allowed: list[str], index: int) -> str:
    """Return ``wanted`` if allowed, else the round-robin pick (LLMs invent ids)."""
    return wanted if wanted in allowed else allowed[index % len(allowed)]
