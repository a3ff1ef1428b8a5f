import json, sys
sys.path.insert(0, "benchmarks")
import torch; torch.set_num_threads(1)
from bench_oracle_quality import one
arms = {
 "drlhf": {"mode": "drlhf"},
 "resolve20": {"mode": "pbrl", "oracle_resolve_steps": 20},
 "resolve20_lr4x": {"mode": "pbrl", "oracle_resolve_steps": 20, "oracle_lr": 0.02},
 "resolve20_win200": {"mode": "pbrl", "oracle_resolve_steps": 20, "penalty_window_steps": 200},
 "resolve40_lr4x_win200": {"mode": "pbrl", "oracle_resolve_steps": 40, "oracle_lr": 0.02, "penalty_window_steps": 200},
 "lr4x_win200": {"mode": "pbrl", "oracle_lr": 0.02, "penalty_window_steps": 200},
}
for seed in [int(x) for x in sys.argv[2].split(",")]:
    for name, arm in arms.items():
        r = one(arm, seed, int(sys.argv[1]))
        print(json.dumps({"arm": name, "seed": seed, **{k: round(v, 3) for k, v in r.items()}}), flush=True)
