import json, sys
sys.path.insert(0, "benchmarks")
import torch; torch.set_num_threads(1)
from bench_oracle_quality import one
arms = {
 "drlhf": {"mode": "drlhf"},
 "resolve20_win200": {"mode": "pbrl", "oracle_resolve_steps": 20, "penalty_window_steps": 200},
 "resolve20_win400": {"mode": "pbrl", "oracle_resolve_steps": 20, "penalty_window_steps": 400},
 "cold4_resolve20_win200": {"mode": "pbrl", "oracle_steps": 4, "oracle_warm_start": False, "oracle_resolve_steps": 20, "penalty_window_steps": 200},
 "resolve10_every10_win200": {"mode": "pbrl", "oracle_every": 10, "oracle_resolve_steps": 10, "penalty_window_steps": 200},
 "resolve20_every10_win400": {"mode": "pbrl", "oracle_every": 10, "oracle_resolve_steps": 20, "penalty_window_steps": 400},
}
for seed in [int(x) for x in sys.argv[2].split(",")]:
    for name, arm in arms.items():
        r = one(arm, seed, int(sys.argv[1]))
        print(json.dumps({"arm": name, "seed": seed, **{k: round(v, 3) for k, v in r.items()}}), flush=True)
