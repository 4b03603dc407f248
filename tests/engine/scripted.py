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


class PreferredWriters:
    """Patch for ``Sampler.sample``: each listed writer *prefers* the next token of its script.

    Unlike :class:`ScriptedWriters` the preference goes through the sampler's masks (bans, markup guards,
    grammars): a banned token is not written, the row's best allowed token is. The script advances by one
    token per sample either way; after it, the writer's own choices (or EOS, with ``eos_after``) follow.
    """

    def __init__(self, tokenizer, scripts: dict[str, str], eos: int | None = None) -> None:
        self.queues = {w: list(tokenizer.encode(t, add_special_tokens=False)) for w, t in scripts.items()}
        self.eos = eos

    def install(self, monkeypatch) -> None:
        from hogwild_agents.runner.sampling import Sampler

        original = Sampler.sample
        script = self

        def sample(self, logits, requests):
            logits = logits.clone()
            for row, request in enumerate(requests):
                queue = script.queues.get(request.writer)
                if queue:
                    logits[row, queue.pop(0)] = 1e4
                elif queue is not None and script.eos is not None:
                    logits[row, script.eos] = 1e4
            return original(self, logits, requests)

        monkeypatch.setattr(Sampler, "sample", sample)
