"""Force chosen texts out of a real model run by masking logits (the model still runs every forward)."""

from __future__ import annotations

import torch


class ScriptedWriters:
    """Patch for ``Sampler.sample``: each writer emits the token ids of its script, then EOS."""

    def __init__(self, tokenizer, scripts: dict[str, str], eos: int) -> None:
        self.queues = {w: list(tokenizer.encode(t, add_special_tokens=False)) for w, t in scripts.items()}
        self.eos = eos

    def install(self, monkeypatch) -> None:
        from hogwild_agents.runner.sampling import Sampler

        original = Sampler.sample
        script = self

        def sample(self, logits: torch.Tensor, writers, constraints=None, suppress=None, greedy=None):
            picks = original(self, logits, writers, constraints, suppress, greedy)
            for row, writer in enumerate(writers):
                if writer in script.queues:
                    queue = script.queues[writer]
                    picks[row] = queue.pop(0) if queue else script.eos
            return picks

        monkeypatch.setattr(Sampler, "sample", sample)
