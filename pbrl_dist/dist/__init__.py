"""Execution: one trial, a local sweep, and (with Ray) actors, Tune sweeps and job submission.

| module | what |
|---|---|
| ``trial`` | run one trial into ``OUT/<trial>/`` (config.yaml, metrics.jsonl, final_state.npz, result.json) |
| ``local`` | ``pbrl run``: every trial in this process, one after another |
| ``specs`` | re-typing resolved configs, the Tune-only ``sweep:`` fields, per-trial resource bundles |
| ``wandb_sink`` | one W&B run per trial (offline by default, never fatal) |
| ``confirm`` | ``pbrl report --confirm-seeds``: re-run the best grid point on fresh seeds |
| ``ray_runner`` | the ``ray`` executor: rollout-worker and oracle actors behind ``ChunkRunner`` |
| ``tune_trainable`` | the Tune trainable (reports metrics, checkpoints through ``tune.Checkpoint``) |
| ``tune_sweep`` | ``pbrl sweep``: validate, size the cluster, run or resume the Tuner |
| ``submit`` | ``pbrl submit``: the sweep as a Ray Job; follow its logs |

Only ``ray_*``, ``tune_*`` and ``submit`` import Ray; importing ``pbrl_dist.dist`` (or ``trial``, ``local``,
``specs``, ``wandb_sink``, ``confirm``) does not.
"""
