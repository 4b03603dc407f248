"""The engine: the public facade, the scheduler and the rules of a run.

One scheduler step is schedule -> forward -> postprocess over every active run's writers; a run's
state is plain data, and the rules applied to it are small modules.
"""
