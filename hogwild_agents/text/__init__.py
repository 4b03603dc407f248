"""Text around the model: prompts, the step rule and incremental detokenization.

Prompts are rendered through the model's own chat template.
"""
