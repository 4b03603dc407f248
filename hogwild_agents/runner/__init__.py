"""The only code that touches the model and the GPU.

The model runner, CUDA graphs, the attention hook, batched sampling, model support checks and
tensor parallelism.
"""
