"""The Programmer's step: write the files its task names, inside its lane's folder."""

from __future__ import annotations

from ...errors import AttemptError
from ...llm.schemas import ProgrammerOutput
from ..files import inside, safe_relpath, write_atomic
from ..types import Complete, StepContext
from .common import ask, lane_of, usage

MAX_FILES = 50
MAX_BYTES = 2_000_000


def programmer_step(ctx: StepContext) -> Complete:
    card, lane = ctx.job.card, lane_of(ctx)
    duty = (
        f"a Programmer in the {lane} lane. Write every file the task asks for, complete, "
        "with paths relative to the lane's folder (no absolute paths, no '..')."
    )
    ctx.beat(0.05, "writing")
    out, reply = ask(ctx, ProgrammerOutput, duty, dict(card))
    if len(out.files) > MAX_FILES:
        raise AttemptError("bad_output", f"{len(out.files)} files (at most {MAX_FILES})")
    if sum(len(f.content.encode()) for f in out.files) > MAX_BYTES:
        raise AttemptError("bad_output", f"files larger than {MAX_BYTES} bytes in all")
    lane_dir = ctx.artifacts_dir / lane
    # Check every path before writing any file: a refused reply leaves nothing behind.
    targets = [(safe_relpath(f.path), f.content) for f in out.files]
    lane_dir.mkdir(parents=True, exist_ok=True)
    resolved = [(rel, inside(lane_dir, rel), content) for rel, content in targets]
    ctx.beat(0.85, f"saving {len(resolved)} file(s)")
    for _, path, content in resolved:
        write_atomic(path, content.encode())
    artifacts = sorted({rel for rel, _, _ in resolved})
    return Complete(
        {
            "state": "completed",
            "lane": lane,
            "artifacts": artifacts,
            "summary": out.summary,
            **usage(reply),
        }
    )
