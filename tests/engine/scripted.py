"""Force chosen texts out of a real model run by overriding sampled ids (the model still runs)."""

from __future__ import annotations


class ScriptedWriters:
    """Patch for ``Sampler.sample``: each scripted writer emits the token ids of its script, then EOS."""

    def __init__(self, tokenizer, scripts: dict[str, str], eos: int) -> None:
        self.queues = {w: list(tokenizer.encode(t, add_special_tokens=False)) for w, t in scripts.items()}
        self.eos = eos

    def install(self, monkeypatch) -> None:
        from hogwild_agents.runner.sampling import Sampler

        original = Sampler.sample
        script = self

        def sample(self, logits, requests):
            picks = original(self, logits, requests)
            for row, request in enumerate(requests):
                if request.writer in script.queues:
                    queue = script.queues[request.writer]
                    picks[row] = queue.pop(0) if queue else script.eos
            return picks

        monkeypatch.setattr(Sampler, "sample", sample)
