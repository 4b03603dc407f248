"""Every knob of the engine, in one validated pydantic model."""

from __future__ import annotations

import string
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_WORKER_NAMES",
    "ENGINE_FIELDS",
    "RESERVED_WRITERS",
    "HogwildConfig",
    "Layout",
    "WorkerRole",
]

Layout = Literal["combined", "contiguous", "interleaved"]

DEFAULT_WORKER_NAMES: tuple[str, ...] = (
    "Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi",
    "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil",
)  # fmt: skip


_PLACEHOLDERS = frozenset({"names", "count"})
"""The fields a ``system_prompt`` template may use."""


def _check_unicode(value: object, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(
                f"{where} holds text that is not valid Unicode (a lone surrogate at index {e.start}); send "
                "well-formed UTF-8 text"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, where)
            _check_unicode(item, where)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_unicode(item, where)


MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 512

ENGINE_FIELDS = frozenset(
    {
        "page_size",
        "max_cache_tokens",
        "attention_backend",
        "cuda_graphs",
        "tensor_parallel_graphs",
        "trust_model_support",
        "keep_runs",
        "overlap_host_work",
        "fused_ops",
        "max_parallel_tools",
    }
)
"""Options fixed when the engine is built (its store, kernels, graphs): a run cannot override them."""

RESERVED_WRITERS = frozenset({"prompt", "header", "finisher", "engine", "probe", "injected"})
"""Writer ids of the engine's own blocks and events; no worker may be named so."""


class WorkerRole(BaseModel):
    """What one worker is for: its name, its instructions, the tools it may call and how.

    Every worker's role is written into the shared prompt, so everyone knows who does what; a worker may
    call only its own tools (its grammar and its call detection know no other), and its ``tool_choice``
    applies to its first step (``"required"`` or a tool name forces a call there).

    Example:
        >>> WorkerRole(name="Alice", instructions="Look cities up.", tools=["search"], tool_choice="required")
        WorkerRole(name='Alice', instructions='Look cities up.', tools=['search'], tool_choice='required')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The worker's name (unique; not one of the engine's reserved writers).")
    instructions: str = Field("", description="What this worker should do, shown to every worker.")
    tools: list[str] | None = Field(
        None, description="Names of the run's tools this worker may call; None: all of them, []: none."
    )
    tool_choice: str = Field(
        "auto",
        description="For this worker's first step: 'auto', 'none', 'required'/'any' (a call of one of its "
        "tools) or one of its tools' names.",
    )


class HogwildConfig(BaseModel):
    """Configuration of a :class:`~hogwild_agents.HogwildEngine` and defaults of its runs.

    Per-run overrides (``engine.run(messages, temperature=0.7)``) are validated through this model too.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    CHAT_DEFAULTS: ClassVar[dict[str, Any]] = {
        "collaboration": "auto",
        "early_exit": True,
        "probe_every": 16,
        "probe_min_steps": 1,
        "max_forwards": 256,
        "max_answer_tokens": 256,
    }
    """What the chat front ends (the CLI, ``ChatHogwild``, the LlamaIndex ``Hogwild``, the server) ask for
    unless told otherwise: a greeting is answered by one plain worker, a task by the team, which stops when
    a probe finds the answer ready. The library's own defaults (the fields below) stay exact and explicit."""

    workers: int = Field(2, ge=1, le=64, description="Number of workers writing in parallel.")
    worker_names: list[str] | None = Field(
        None, description="Names of the workers; defaults to Alice, Bob, Carol, ... (must be unique)."
    )
    roles: list[WorkerRole] | None = Field(
        None,
        description="One role per worker (name, instructions, tools, tool_choice); sets the workers and "
        "their names. None: anonymous workers sharing every tool.",
    )
    layout: Layout = Field("combined", description="How each worker's view of the shared cache is ordered.")
    collaboration: bool | Literal["auto"] = Field(
        True,
        description="Collaboration prompt, step headers and self-checks. Off: plain generation per worker. "
        "'auto' (the front ends' default): the team for requests with numbers, code, several lines, 12+ "
        "words or tools, one plain worker otherwise (see text/router.py); the run's result says which.",
    )
    finisher: bool | None = Field(
        None, description="Run the finisher turn that writes the answer; None follows `collaboration`."
    )
    self_check_every: int = Field(
        256, ge=0, description="Tokens a worker writes between self-check questions (0 disables)."
    )
    self_check_text: str = Field(
        "Quick check: am I doing redundant work? (yes/no): ",
        description="The self-check question opening a worker's next step.",
    )
    ban_header_tokens: bool = Field(
        True, description="With collaboration, forbid tokens containing '#' so workers cannot forge headers."
    )
    system_prompt: str | None = Field(
        None, description="Replaces the built-in collaboration rules (use {names} and {count} placeholders)."
    )
    guard_markup: bool = Field(
        True,
        description="With collaboration, workers cannot write step headers or the '<...>' marker, and the "
        "finisher cannot write any of the workspace's markup (headers, marker, self-check question, "
        "<answer> tags): tokens that would complete one are banned.",
    )
    early_exit: bool = Field(
        False,
        description="Ask the model, every `probe_every` worker forwards (from the first), whether the work "
        "so far already answers the request (a one-token yes/no probe in a throw-away block the workers "
        "never see); yes ends generation with stop_reason 'answer_ready'. On by default in the "
        "integrations, the CLI and the server.",
    )
    probe_every: int = Field(8, ge=1, description="Worker forwards between early-exit probes.")
    probe_min_steps: int = Field(
        0,
        ge=0,
        description="Probe only once every working worker has committed this many steps (small models "
        "say yes to the probe before any real work is there; the chat front ends ask for 1).",
    )
    loop_guard: Literal["nudge", "stop", "off"] = Field(
        "nudge",
        description="When a worker commits a step that repeats an earlier one (its own or another's) at "
        "least `loop_similarity` alike: 'nudge' opens its next step with `loop_nudge`, and stops it if it "
        "repeats again; 'stop' stops it at once (stop reason 'loop'); 'off' lets it go on.",
    )
    loop_similarity: float = Field(
        0.9, ge=0.5, le=1.0, description="How alike two steps must be to count as a repeat (difflib ratio)."
    )
    loop_nudge: str = Field(
        "(That repeats earlier work. Do something new, or say that the work is done.) ",
        description="What opens a repeating worker's next step under loop_guard='nudge'.",
    )
    stop_on_final_answer: bool = Field(
        True, description="End generation once a committed step contains a final answer (\\boxed{...})."
    )
    max_forwards: int = Field(512, ge=1, description="Budget of sequential forward passes for the workers.")
    max_new_tokens: int | None = Field(None, ge=1, description="Budget of tokens sampled by all workers.")
    max_answer_tokens: int = Field(
        256,
        ge=1,
        description="Tokens of the answer: the finisher's, or in plain generation without tools (no "
        "finisher) the first worker's, which then stops with reason 'max_answer_tokens'.",
    )
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens (0 keeps all).")
    seed: int | None = Field(
        0,
        ge=0,
        lt=2**63,
        description="Seed of the per-worker samplers (0 <= seed < 2**63); None draws a fresh one (recorded).",
    )
    stop: list[str] = Field(
        default_factory=list,
        max_length=MAX_STOP_STRINGS,
        description=f"Strings that end the answer (and a worker): at most {MAX_STOP_STRINGS}, each 1 to "
        f"{MAX_STOP_CHARS} characters.",
    )
    page_size: int = Field(16, ge=1, le=1024, description="Tokens per KV page.")
    max_cache_tokens: int = Field(
        16384, ge=64, description="Capacity of the shared paged KV store in tokens (all blocks together)."
    )
    context_window: int | None = Field(
        None, ge=16, description="Longest view a worker may have; defaults to the model's context length."
    )
    attention_backend: Literal["auto", "triton", "reference"] = Field(
        "auto", description="Attention path: Triton kernel on CUDA, PyTorch reference on CPU ('auto')."
    )
    cuda_graphs: bool = Field(
        True, description="Replay decode steps as CUDA graphs (CUDA with the Triton backend; else eager)."
    )
    tensor_parallel_graphs: bool = Field(
        False,
        description="Also replay decode steps as CUDA graphs under tensor parallelism (collectives "
        "captured). Opt-in: same greedy tokens as eager in float32 and 1.3x faster than one GPU on a "
        "QwQ-32B shape (bench/RESULTS.md), but measured only at the runner level, and the benchmark's "
        "process exit hung once.",
    )
    fused_ops: Literal["auto", "none", "liger", "compile"] = Field(
        "auto",
        description="Fused ops in every forward: Liger-Kernel's RMSNorm, RoPE and gate-up SwiGLU kernels, "
        "with each layer's q|k|v and gate|up weight products merged into one (no extra memory). 'auto' "
        "uses them on CUDA when installed (the [fast] extra) and the family is supported; 'none' keeps "
        "the plain modules; 'liger' insists; 'compile' merges the products and compiles every CUDA-graph "
        "decode step with torch.compile instead (tens of seconds per new step shape).",
    )
    max_parallel_tools: int = Field(
        8, ge=1, le=256, description="Tool calls that may run at the same time (sync tools' thread pool)."
    )
    overlap_host_work: bool = Field(
        True,
        description="Plan the next decode step while the GPU runs the current one, when the sampled tokens "
        "cannot change the plan (exact: the same tokens either way; off only to measure what it saves).",
    )
    trust_model_support: bool = Field(
        False, description="Skip the model-family allow-list (the structural checks still run)."
    )
    tool_mode: Literal["execute", "return"] = Field(
        "execute", description="Run tools inside the shared cache, or return calls to the caller."
    )
    tool_choice: str = Field("auto", description="'auto', 'none', 'required' (or 'any'), or a tool name.")
    constrain_tool_calls: bool = Field(
        True,
        description="Constrain workers' calls with a grammar once started (off: parsed from free text).",
    )
    tool_timeout_s: float = Field(30.0, gt=0, description="Seconds a tool call may take before it fails.")
    max_tool_calls: int = Field(16, ge=0, description="Tool calls allowed per run.")
    max_tool_result_tokens: int = Field(512, ge=16, description="Longer tool results are truncated.")
    tool_landing: Literal["when_ready", "next_forward"] = Field(
        "when_ready",
        description="When a call's result is written. 'when_ready': at the first forward after the tool "
        "returns, while the other workers keep writing (how much they write first depends on the tool's "
        "speed, so a run with tools is not reproducible). 'next_forward': the run pauses until its calls "
        "return and writes their results at the forward right after the call closed, so the same request "
        "and seed give the same run however long the tools take (other runs are not paused).",
    )
    response_format: dict | None = Field(
        None, description="JSON schema the answer must follow (enforced by constrained decoding)."
    )
    keep_runs: int = Field(4, ge=0, description="Finished runs kept for prefix reuse (least recently used).")

    @field_validator("worker_names")
    @classmethod
    def _unique_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            if len(set(names)) != len(names) or any(not n.strip() for n in names):
                raise ValueError(f"worker_names must be unique and non-empty, got {names}")
            reserved = sorted(set(names) & RESERVED_WRITERS)
            if reserved:
                raise ValueError(
                    f"worker_names {reserved} are reserved for the engine's own writers "
                    f"({', '.join(sorted(RESERVED_WRITERS))}); choose other names"
                )
        return names

    @field_validator("system_prompt")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        if template is None:
            return None
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as e:  # a lone '{' or '}'
            raise ValueError(
                f"system_prompt is not a valid template ({e}); write literal braces as '{{{{' and '}}}}'"
            ) from None
        unknown = sorted({f for f in fields if f.split(".")[0].split("[")[0] not in _PLACEHOLDERS})
        if unknown:
            raise ValueError(
                f"system_prompt has unknown placeholder(s) {['{' + f + '}' for f in unknown]}; the known "
                f"ones are {{names}} and {{count}} (write literal braces as '{{{{' and '}}}}')"
            )
        return template

    @model_validator(mode="after")
    def _valid_text(self) -> HogwildConfig:
        """Every text option must be encodable (no lone surrogates): refused here, not in a forward."""
        for name, value in self.model_dump().items():
            _check_unicode(value, name)
        return self

    @field_validator("stop")
    @classmethod
    def _bounded_stops(cls, stops: list[str]) -> list[str]:
        for stop in stops:
            if not stop:
                raise ValueError("stop strings must be non-empty (an empty one would stop at once)")
            if len(stop) > MAX_STOP_CHARS:
                raise ValueError(
                    f"a stop string has {len(stop)} characters; at most {MAX_STOP_CHARS} are allowed"
                )
        return stops

    @model_validator(mode="after")
    def _names_cover_workers(self) -> HogwildConfig:
        if self.roles is not None:
            names = [r.name for r in self.roles]
            if not names:
                raise ValueError("roles must list at least one worker")
            if self.worker_names is not None and list(self.worker_names) != names:
                raise ValueError("give worker names either as worker_names or in roles, not both")
            if len(set(names)) != len(names) or any(not n.strip() for n in names):
                raise ValueError(f"role names must be unique and non-empty, got {names}")
            reserved = sorted(set(names) & RESERVED_WRITERS)
            if reserved:
                raise ValueError(f"role names {reserved} are reserved for the engine's own writers")
            # The roles decide how many workers there are (assignment bypasses re-validation).
            object.__setattr__(self, "workers", len(names))
            object.__setattr__(self, "worker_names", names)
        if self.worker_names is not None and len(self.worker_names) < self.workers:
            raise ValueError(
                f"worker_names has {len(self.worker_names)} names for {self.workers} workers; "
                "give one per worker"
            )
        if self.worker_names is None and self.workers > len(DEFAULT_WORKER_NAMES):
            raise ValueError(f"more than {len(DEFAULT_WORKER_NAMES)} workers need explicit worker_names")
        return self

    @property
    def names(self) -> list[str]:
        """The names of the configured workers, in worker order."""
        return list((self.worker_names or DEFAULT_WORKER_NAMES)[: self.workers])

    @property
    def use_finisher(self) -> bool:
        """Whether the finisher runs."""
        return bool(self.collaboration) if self.finisher is None else self.finisher

    def resolved(self, team: bool) -> HogwildConfig:
        """This configuration with ``collaboration="auto"`` decided: the team, or one plain worker."""
        if self.collaboration != "auto":
            return self
        if team:
            return self.with_overrides(collaboration=True)
        return self.with_overrides(collaboration=False, workers=1, roles=None, worker_names=None)

    def for_run(self, **overrides: object) -> HogwildConfig:
        """The configuration of one run: :meth:`with_overrides`, refusing the engine-level options.

        Raises:
            ValueError: an option is unknown, invalid, or one of :data:`ENGINE_FIELDS` (fixed when the
                engine was built; build another engine to change it).
        """
        roles = overrides.get("roles", self.roles)
        if roles and "workers" in overrides and overrides["workers"] != len(roles):  # type: ignore[arg-type]
            raise ValueError(
                f"workers={overrides['workers']} but {len(roles)} roles are given: the roles decide the "  # type: ignore[arg-type]
                "workers; drop one of the two"
            )
        fixed = sorted(set(overrides) & ENGINE_FIELDS)
        if fixed:
            raise ValueError(
                f"{fixed} are engine-level options, fixed when the engine was built; a run cannot change "
                "them (pass them to HogwildEngine / from_pretrained instead)"
            )
        return self.with_overrides(**overrides)

    def with_overrides(self, **overrides: object) -> HogwildConfig:
        """Return a validated copy with ``overrides`` applied; unknown keys raise ``ValueError``."""
        unknown = set(overrides) - set(type(self).model_fields)
        if unknown:
            raise ValueError(
                f"unknown option(s) {sorted(unknown)}; valid options are {sorted(type(self).model_fields)}"
            )
        return type(self).model_validate({**self.model_dump(), **overrides})
