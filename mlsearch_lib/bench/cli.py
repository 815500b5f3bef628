"""The benchmarks' command line: ``python -m mlsearch_lib.bench scoring|encoder|contrastive|gpu|budget|memory|trl``.

``scoring`` (:mod:`mlsearch_lib.bench.scoring`): gemma-3-270m's three ways of scoring and the
e5 cross-encoder, side by side, with training throughput: ``reports/bench/scoring.md``.

``encoder [--rows 512]`` (:mod:`mlsearch_lib.bench.encoder_bf16`): the cross-encoder's top-stack
training and scoring in fp32 and bf16 autocast: ``reports/bench/encoder.md``.

``contrastive [--rows 4000]`` (same module): one contrastive tower of ``hybrid_ctr`` trained in fp32
and in bf16 autocast: ``reports/bench/contrastive.md``.

``gpu [--model ID] [--rows 512] [--random-weights --tokenizer DIR]`` (a CUDA machine only;
elsewhere it exits with a message and writes nothing): the same three ways and vLLM's (when the
optional gpu extra is installed) on the GPU profile's model, LoRA training throughput, and
training's peak memory against the memory plan: :mod:`mlsearch_lib.bench.gpu`, ``reports/bench/gpu.md``.

``budget --profile gpu [--rows QC=300000 QI=340000]`` (:mod:`mlsearch_lib.book.budget`): the GPU-hours of
every job of a profile's book from those measurements: ``reports/bench/gpu_budget.md``.

``trl [--rows 48] [--epochs 2]`` (:mod:`mlsearch_lib.bench.trl_sft`; needs ``pip install trl``): TRL's
SFTTrainer against the book's answer-token Trainer on gemma-3-270m, and the tokens a training row
costs padded, padding-free and with the shared prefix run once: ``reports/bench/trl.md``.

``memory [--no-write]`` (:mod:`mlsearch_lib.bench.memory_report`): the memory plan of every shipped
profile, estimated before a weight is loaded: ``reports/bench/memory_plan.md``.
"""

from __future__ import annotations

import argparse
import sys

from mlsearch_lib.bench.encoder_bf16 import run_contrastive, run_encoder, write_contrastive_report, write_encoder_report
from mlsearch_lib.bench.scoring import run_scoring, write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlsearch_lib.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("scoring", help="scoring and training throughput of gemma-3-270m and e5-small")
    sc.add_argument("--rows", type=int, default=256, help="QC training rows scored (default: %(default)s)")
    sc.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the benchmark)")
    sc.add_argument("--repeats", type=int, default=2, help="scoring runs per method; the best is kept")
    en = sub.add_parser("encoder", help="the cross-encoder's top-stack training and scoring, fp32 vs bf16")
    en.add_argument("--rows", type=int, default=512, help="QC training rows scored (default: %(default)s)")
    en.add_argument("--steps", type=int, default=20, help="training steps timed per setting (default: %(default)s)")
    en.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the benchmark)")
    ct = sub.add_parser("contrastive", help="one contrastive tower of hybrid_ctr trained in fp32 vs bf16")
    ct.add_argument("--rows", type=int, default=4000, help="QC training rows (default: %(default)s)")
    ct.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the benchmark)")
    gp = sub.add_parser("gpu", help="GPU scoring (and vLLM's, when installed), LoRA training, memory vs plan; CUDA")
    gp.add_argument("--profile", default="gpu", help="llm settings to use (default: gpu)")
    gp.add_argument("--model", help="another model than the profile's: a hub id or a local directory")
    gp.add_argument("--rows", type=int, default=512, help="QC training rows scored (default: %(default)s)")
    gp.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the benchmark)")
    gp.add_argument("--random-weights", action="store_true",
                    help="the architecture with random weights: timings and memory only (no ROC-AUC)")
    gp.add_argument("--tokenizer", help="with --random-weights: a folder of tokenizer files for the model")
    gp.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs vLLM shards the model over (default: 1)")
    gp.add_argument("--gpu-memory-utilization", type=float, default=0.45,
                    help="share of GPU memory vLLM may take (default: %(default)s)")
    tr = sub.add_parser("trl", help="TRL SFTTrainer vs the answer-token Trainer on gemma-3-270m (pip install trl)")
    tr.add_argument("--rows", type=int, default=48, help="QC training rows (default: %(default)s)")
    tr.add_argument("--epochs", type=float, default=2.0, help="epochs for both trainers (default: %(default)s)")
    mem = sub.add_parser("memory", help="the memory plan of every shipped profile (estimates): reports/bench/memory_plan.md")
    mem.add_argument("--no-write", action="store_true", help="print the table only")
    bud = sub.add_parser("budget", help="GPU-hours per notebook and job of a profile's book: reports/bench/gpu_budget.md")
    bud.add_argument("--profile", default="gpu", help="the profile whose book is planned (default: gpu)")
    bud.add_argument("--rows", nargs="*", default=[], metavar="TASK=N",
                     help="plan at these training sizes (e.g. QC=300000 QI=340000, the official ones)")
    bud.add_argument("--gpus", type=int, default=None, help="GPUs for the wall-time line (default: 8)")
    args = parser.parse_args(argv)
    if args.command == "budget":
        from mlsearch_lib.book.budget import write as write_budget
        from mlsearch_lib.config.profiles import load_profile

        rows = {k: int(v) for k, v in (r.split("=") for r in args.rows)}
        print(write_budget(load_profile(args.profile), rows or None, args.gpus))
        return
    if args.command == "memory":
        from mlsearch_lib.bench.memory_report import write_report as write_memory_report

        print(write_memory_report(not args.no_write))
        return
    if args.command == "gpu":
        from mlsearch_lib.bench.gpu import gpu_unavailable, run_gpu, write_gpu_report

        why = gpu_unavailable()
        if why:
            print(f"bench gpu: {why}", file=sys.stderr)
            sys.exit(2)
        res = run_gpu(args.profile, args.model, args.rows, args.quick, args.tensor_parallel_size,
                      args.gpu_memory_utilization, random_weights=args.random_weights, tokenizer=args.tokenizer)
        print(write_gpu_report(res))
        return
    if args.command == "trl":
        from mlsearch_lib.bench.trl_sft import run_trl, write_trl_report

        print(write_trl_report(run_trl(args.rows, epochs=args.epochs)))
        return
    if args.command == "contrastive":
        print(write_contrastive_report(run_contrastive(args.rows, quick=args.quick)))
        return
    if args.command == "encoder":
        print(write_encoder_report(run_encoder(args.rows, args.steps, quick=args.quick)))
        return
    res = run_scoring(args.rows, args.quick, args.repeats)
    print(write_report(res))

