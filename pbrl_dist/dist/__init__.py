"""Execution: one trial, a local sweep, and (with Ray) actors, Tune sweeps and job submission.

Only the ``ray_*`` modules import Ray; importing ``pbrl_dist.dist`` itself does not.
"""
