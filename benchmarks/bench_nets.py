"""Atari network speed on CPU: memory layout and precision, one torch thread, side by side.

Usage:  .venv/bin/python benchmarks/bench_nets.py [--repeats 5] [--per-layer]

Times, for the actor-critic and the reward model of MATH.md §7.2:

* acting: a forward pass under ``torch.inference_mode`` on 16 frame stacks (one env step of 16 envs);
* A2C learner step: forward + backward on 96 frame stacks ((5 steps + the bootstrap state) × 16 envs,
  the learner's batch in ``rlhf.A2CTrainer.step``);
* reward-model minibatch: forward + backward on 32 pairs × 25 steps × 2 segments = 1,600 stacks.

Layouts: PyTorch's default contiguous NCHW (``obs.float() / 255``, what stock SB3 runs) against
channels-last (``nets.atari.frames_to_float`` and channels-last weights, what pbrl_dist runs).
``bf16`` rows add ``torch.autocast("cpu", torch.bfloat16)`` on top of channels-last (the CPU here
has AVX512-BF16); they are shown for reference, pbrl_dist trains in float32.
``--per-layer`` also times each conv layer of the actor-critic alone (forward, and backward with the
weight gradient, plus the input gradient for every layer but the first) in both layouts: that is where
the layout matters. Best of ``--repeats`` rounds (the variants take turns within a round) of a few calls each.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import torch

from pbrl_dist.nets.atari import AtariActorCritic, AtariRewardModel

SHAPE = (4, 84, 84)


def best_ms(fns: dict[str, Callable[[], None]], repeats: int, calls: int) -> dict[str, float]:
    """Return name → best mean milliseconds per call; the variants take turns in every round."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / calls)
    return {name: t * 1e3 for name, t in best.items()}


def variants(make: Callable[[], torch.nn.Module]) -> dict[str, tuple[torch.nn.Module, bool, bool]]:
    """Return name → (network, plain NCHW input, bf16 autocast)."""
    cl = make()
    plain = make().to(memory_format=torch.contiguous_format)
    plain.load_state_dict(cl.state_dict())
    return {
        "contiguous fp32": (plain, True, False),
        "channels-last fp32": (cl, False, False),
        "channels-last bf16": (cl, False, True),
    }


def forward(net: torch.nn.Module, obs: torch.Tensor, plain: bool) -> torch.Tensor:
    """Return a scalar of the network's outputs (plain = the old ``obs.float() / 255`` input)."""
    if plain:  # bypass frames_to_float: what a default-layout network computes
        x = obs.float() / 255.0
        if isinstance(net, AtariActorCritic):
            z = net.fc(net.conv(x))
            return net.policy_head(z).float().logsumexp(-1).sum() + net.value_head(z).float().sum()
        return net.out(net.act(net.fc(net.conv(x)))).float().sum()
    out = net(obs)
    if isinstance(out, tuple):
        return out[0].float().logsumexp(-1).sum() + out[1].float().sum()
    return out.float().sum()


def per_layer(repeats: int) -> None:
    """Print forward / backward ms of each actor-critic conv on 80 stacks, NCHW vs channels-last."""
    print("actor-critic conv layers, batch 80, float32: forward / backward ms")
    size = SHAPE[1]
    cin = SHAPE[0]
    for kernel, stride, cout in AtariActorCritic.CONV_SPEC:
        row = []
        for layout in (torch.contiguous_format, torch.channels_last):
            conv = torch.nn.Conv2d(cin, cout, kernel, stride).to(memory_format=layout)
            x = torch.randn(80, cin, size, size).contiguous(memory_format=layout)
            x.requires_grad_(cin != SHAPE[0])  # the first layer needs no input gradient
            g = torch.ones_like(conv(x))

            def fwd(conv=conv, x=x) -> None:
                conv(x)

            def fwd_bwd(conv=conv, x=x, g=g) -> None:
                conv(x).backward(g)

            ms = best_ms({"f": fwd, "fb": fwd_bwd}, repeats, 5)
            row.append(f"{ms['f']:6.1f} / {ms['fb'] - ms['f']:6.1f}")
        print(
            f"  conv {kernel}x{kernel}/{stride} {cin:>2}->{cout:<3} NCHW {row[0]}   channels-last {row[1]}"
        )
        cin, size = cout, (size - kernel) // stride + 1


def main() -> None:
    """Print the table of BENCHMARKS.md."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--per-layer", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.per_layer:
        per_layer(args.repeats)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1600, *SHAPE), generator=g, dtype=torch.uint8)
    cases = [
        ("acting, 16 stacks", lambda: AtariActorCritic(SHAPE, 9), 16, False, 20),
        ("A2C step, 96 stacks", lambda: AtariActorCritic(SHAPE, 9), 96, True, 4),
        ("RM minibatch, 1600", lambda: AtariRewardModel(SHAPE, 9), 1600, True, 1),
    ]
    print(f"torch {torch.__version__}, 1 thread, best of {args.repeats}; ms per call")
    print(f"{'case':22s} {'variant':20s} {'ms':>8s} {'vs contiguous fp32':>19s}")
    for case, make, batch, train, calls in cases:
        obs = frames[:batch]
        fns = {}
        for name, (net, plain, bf16) in variants(make).items():
            net.train(train)

            def call(net=net, plain=plain, bf16=bf16, obs=obs, train=train) -> None:
                amp = (
                    torch.autocast("cpu", dtype=torch.bfloat16)
                    if bf16
                    else contextlib.nullcontext()
                )
                if train:
                    net.zero_grad(set_to_none=True)
                    with amp:
                        y = forward(net, obs, plain)
                    y.backward()
                else:
                    with torch.inference_mode(), amp:
                        forward(net, obs, plain)

            fns[name] = call
        ms = best_ms(fns, args.repeats, calls)
        base = ms["contiguous fp32"]
        for name, t in ms.items():
            print(f"{case:22s} {name:20s} {t:8.2f} {base / t:18.2f}x")


if __name__ == "__main__":
    main()
