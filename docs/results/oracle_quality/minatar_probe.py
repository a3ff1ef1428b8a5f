import json, sys, time, io, contextlib
import torch; torch.set_num_threads(1)
from omegaconf import OmegaConf
from pbrl_dist.metrics import ListSink
from pbrl_dist.problems.rlhf import GymRLHFConfig, build
from pbrl_dist.rlhf import RLHFConfig, run
y = OmegaConf.load("sweeps/minatar_rlhf.yaml")
m = {k: v for k, v in OmegaConf.to_container(y.method).items() if k != "algo"}
p = {k: v for k, v in OmegaConf.to_container(y.problem).items() if k != "name"}
p["env_id"] = "MinAtar/Breakout-v1"; p.pop("env_import", None)
steps = int(sys.argv[1])
arms = {"drlhf": {"mode": "drlhf"}, "pbrl": {"mode": "pbrl"},
        "strong": {"mode": "pbrl", "oracle_resolve_steps": 20, "oracle_every": 25, "penalty_window_steps": 400, "penalty_batch": 512}}
for name, kw in arms.items():
    mm = dict(m)
    if kw["mode"] != "pbrl":
        mm = {k: v for k, v in mm.items() if not k.startswith(("upper_coef", "oracle_"))}
    cfg = RLHFConfig(**{**mm, "total_env_steps": steps, "log_every_steps": steps, **kw})
    sink = ListSink(); t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run(build(GymRLHFConfig(**p)), cfg, seed=0, sink=sink)
    dt = time.perf_counter() - t; r = sink.rows[-1]
    print(json.dumps({"arm": name, "s": round(dt, 1), "s_per_kframe": round(dt / steps * 1000, 3), "ret": r.get("rl/episode_return"), "oracle_ret": r.get("oracle/episode_return"), "p_hat_pos": r.get("penalty/p_hat_positive")}), flush=True)
