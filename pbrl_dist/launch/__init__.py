"""How trials start: ``pbrl run``'s trial driver, the Tune sweep and trainable, Ray Jobs, W&B, confirm.

| module | what |
|---|---|
| ``trial`` | run one trial into ``OUT/<trial>/`` (config.yaml, metrics.jsonl, final_state.npz, result.json) |
| ``local`` | ``pbrl run``: every trial in this process, one after another (checkpointed, ``--resume``) |
| ``results`` | the results folder: pbrl's marker, safe ``--overwrite``, the provenance record |
| ``specs`` | re-typing resolved configs, the Tune-only ``sweep:`` fields, per-trial resource bundles |
| ``ray_session`` | start or join Ray (fails fast on a wrong ``--address``) |
| ``wandb_sink`` | one W&B run per trial launch (offline by default, never fatal) |
| ``confirm`` | ``pbrl report --confirm-seeds``: re-run the best setting of each method on fresh seeds |
| ``tune_trainable`` | the Tune trainable (reports metrics, checkpoints through ``tune.Checkpoint``) |
| ``tune_sweep`` | ``pbrl sweep``: validate, size the cluster, run or resume the Tuner |
| ``tune_state`` | a verified copy of Tune's state; ``repair`` of cut state files before ``--resume`` |
| ``submit`` | ``pbrl submit``: the sweep as a Ray Job; follow its logs |

Only ``ray_session``, ``tune_*`` and ``submit`` import Ray; importing ``pbrl_dist.launch`` (or ``trial``,
``local``, ``specs``, ``wandb_sink``, ``confirm``) does not.
"""
