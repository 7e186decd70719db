"""``saesuite`` command line: each stage of the pipeline as a subcommand.

Every subcommand that writes creates and checks its output folder before it computes anything;
the suite's errors, and any OSError (a path that cannot be read or written), are printed as one
line naming the problem and exit with status 2; numbers out of range are refused by argparse.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from saesuite.errors import SUITE_ERRORS, describe
from saesuite.outputs import prepare_output_dir


def _none_or_str(value: str) -> str | None:
    return None if value.lower() in ("none", "null", "") else value


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: ``kind`` (int or float) within ``[low, high]`` (an end open when ``*_open``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(filter(None, (lo, hi)))}; got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT = _number(int, 1)
COUNT = _number(int, 0)  # zero allowed
COMPARE_KNOBS = ("k", "knn_k", "permutations", "interval_splits", "interval_level", "seed")
POSITIVE = _number(float, 0, low_open=True)
NON_NEGATIVE = _number(float, 0)
FRACTION = _number(float, 0, 1)
LEVEL = _number(float, 0, 1, low_open=True, high_open=True)


def cmd_fixture(args) -> None:
    from saesuite.data.fixture import make_cifar10_fixture

    prepare_output_dir(args.dir)
    base = make_cifar10_fixture(args.dir, n=args.n, n_test=args.n_test, seed=args.seed)
    print(f"wrote a CIFAR-10-format fixture to {base}")


def cmd_cache(args) -> None:
    prepare_output_dir(args.out_dir)
    from saesuite.models.backbones import load_backbone
    from saesuite.cache.writer import cache_activations
    from saesuite.data.datasets import DatasetSpec, load_dataset

    spec = DatasetSpec(args.dataset, args.root, download=args.download, fixture=args.fixture)
    dataset = load_dataset(spec, args.split)  # a missing dataset fails before any model loads
    backbone = load_backbone(args.model, args.pretrained, args.hook, init_seed=args.init_seed)
    dataset.transform = backbone.preprocess
    manifest = cache_activations(
        backbone, dataset, args.out_dir, dataset_name=args.dataset, split=args.split,
        batch_size=args.batch_size, num_workers=args.num_workers, dtype=args.dtype,
        n_shards=args.shards, device=args.device, limit=args.limit, precision=args.precision,
        max_bad_fraction=args.max_bad_fraction,
    )
    print(f"cached {manifest['n']} x {manifest['d']} activations of {args.model} {manifest['hook']} to {args.out_dir}")


def cmd_verify(args) -> None:
    from saesuite.cache.verify import verify_cache

    manifest = verify_cache(args.dir, checksums=True, finite=True)
    print(f"{args.dir}: OK ({manifest['n']} rows x {manifest['d']}, {len(manifest['shards'])} shards, {manifest['dtype']})")


def cmd_train(args) -> None:
    prepare_output_dir(args.out_dir)
    from saesuite.sae.config import TrainConfig
    from saesuite.sae.train import train_sae

    cfg = TrainConfig(
        architecture=args.architecture, expansion=args.expansion, k=args.k, l1_coefficient=args.l1,
        lr=args.lr, batch_size=args.batch_size, samples=args.samples, seed=args.seed, device=args.device,
        dtype=args.dtype, dead_latent_method=args.dead_latent_method, shuffle=args.shuffle,
        checkpoint_every_steps=args.checkpoint_every, divergence_max_relative_error=args.divergence_max_relative_error,
    )
    sae_cfg = train_sae(args.cache_dir, args.out_dir, cfg)
    print(f"trained a {sae_cfg['architecture']} SAE {sae_cfg['d_in']} -> {sae_cfg['d_sae']} into {args.out_dir}")


def cmd_evaluate(args) -> None:
    prepare_output_dir(args.out_dir)
    from saesuite.evaluate.evaluation import EvalConfig, evaluate_sae

    from saesuite.data.datasets import DatasetSpec

    cfg = EvalConfig(near_zero_threshold=args.near_zero_threshold, dead_threshold=args.dead_threshold, device=args.device)
    spec = DatasetSpec(args.dataset, args.root, fixture=args.fixture) if args.dataset else None
    print(json.dumps(evaluate_sae(args.sae_dir, args.cache_dir, args.out_dir, cfg, dataset=spec), indent=2))


def cmd_compare(args) -> None:
    prepare_output_dir(args.out_dir)
    from saesuite.compare.saes import compare_saes

    from saesuite.compare.features import CompareSettings

    given = {name: getattr(args, name) for name in COMPARE_KNOBS if hasattr(args, name)}  # the rest: the settings' defaults
    result = compare_saes(
        args.cache_a, args.sae_a, args.cache_b, args.sae_b, args.out_dir, device=args.device,
        settings=CompareSettings(**given), seed_saes_a=args.seed_saes_a, seed_saes_b=args.seed_saes_b, workers=args.workers,
    )
    print(json.dumps(result, indent=2))


def cmd_prefetch_weights(args) -> None:
    from saesuite.models.backbones import prefetch

    for spec in prefetch(args.specs):
        print(f"fetched the weights of {spec}")


def cmd_diff_runs(args) -> int:
    from saesuite.report.diff_render import render_report, report_json
    from saesuite.report.diff_runs import diff

    report = diff(args.run_a, args.run_b, args.tolerances)
    print(report_json(report) if args.json else render_report(report))
    return 0 if report["ok"] else 1


def _add_make_cifar10_fixture(sub) -> None:
    """``make-cifar10-fixture DIR``: the size and seed of the fixture."""
    p = sub.add_parser("make-cifar10-fixture", help="write a small class-structured CIFAR-10 in the real on-disk layout")
    p.add_argument("dir", help="dataset root; cifar-10-batches-py/ is created inside")
    p.add_argument("--n", type=POSITIVE_INT, default=1000, help="train images (default 1000)")
    p.add_argument("--n-test", type=POSITIVE_INT, default=None, help="test images (default n/2)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_fixture)


def _add_cache(sub) -> None:
    """``cache OUT_DIR``: the model, its hook, the dataset split, and how the cache is written."""
    p = sub.add_parser("cache", help="cache a model's hooked activations over a dataset split")
    p.add_argument("out_dir")
    p.add_argument("--model", required=True, help="open_clip model name, e.g. RN50, ViT-L-14, tiny-ViT")
    p.add_argument("--pretrained", type=_none_or_str, required=True, help="open_clip weights tag (openai) or 'none' for random weights")
    p.add_argument("--hook", required=True, help="'resid_cls:K' (ViT CLS token after block K) or 'attnpool' (ResNet)")
    p.add_argument("--dataset", required=True, choices=["imagenet", "cifar10"])
    p.add_argument("--root", required=True, help="dataset root directory")
    p.add_argument("--split", required=True, help="train/val (imagenet), train/test (cifar10)")
    p.add_argument("--fixture", action="store_true", help="the root holds a saesuite CIFAR-10 fixture")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=256)
    p.add_argument("--num-workers", type=COUNT, default=0)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--shards", type=POSITIVE_INT, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="cache only the first N images")
    p.add_argument("--init-seed", type=int, default=0, help="seed of random weights (--pretrained none)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16")
    p.add_argument("--max-bad-fraction", type=FRACTION, default=0.001,
                   help="fail when more than this fraction of images cannot be read (they are listed either way)")
    p.set_defaults(func=cmd_cache)


def _add_verify_cache(sub) -> None:
    """``verify-cache DIR``."""
    p = sub.add_parser("verify-cache", help="check a cache against its manifest (rows, dtype, sha256, finite)")
    p.add_argument("dir")
    p.set_defaults(func=cmd_verify)


def _add_train(sub) -> None:
    """``train CACHE_DIR OUT_DIR``: every option defaults to :class:`TrainConfig`'s value (the paper's recipe)."""
    from saesuite.sae.config import TrainConfig
    from saesuite.sae.variants import ARCHITECTURES

    d = TrainConfig()
    p = sub.add_parser("train", help="train an SAE on an activation cache (defaults: the paper's recipe)")
    p.add_argument("cache_dir")
    p.add_argument("out_dir")
    p.add_argument("--architecture", default=d.architecture, choices=ARCHITECTURES)
    p.add_argument("--expansion", type=POSITIVE_INT, default=d.expansion)
    p.add_argument("--k", type=POSITIVE_INT, default=d.k, help="active latents per input (topk)")
    p.add_argument("--l1", type=NON_NEGATIVE, default=d.l1_coefficient, help="L1 coefficient")
    p.add_argument("--lr", type=POSITIVE, default=d.lr,
                   help="learning rate; after a divergence, a lower one resumes from the kept checkpoint")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=d.batch_size)
    p.add_argument("--samples", type=POSITIVE_INT, default=d.samples, help="training samples (steps = samples / batch size)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16"], help="bfloat16: autocast on CUDA")
    p.add_argument("--dead-latent-method", default=d.dead_latent_method, choices=["auto", "none", "resample", "auxk"])
    p.add_argument("--shuffle", default=d.shuffle, choices=["rows", "blocks"], help="blocks: for caches larger than RAM")
    p.add_argument("--checkpoint-every", type=POSITIVE_INT, default=d.checkpoint_every_steps, help="steps between checkpoints")
    p.add_argument("--divergence-max-relative-error", type=POSITIVE, default=d.divergence_max_relative_error,
                   help="stop when, after the warm-ups, a batch's sum ||x_hat - x||^2 exceeds this times its sum ||x||^2")
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub) -> None:
    """``evaluate SAE_DIR CACHE_DIR OUT_DIR``: thresholds, and the dataset that enables zero-shot fidelity."""
    p = sub.add_parser("evaluate", help="metrics of an SAE over every row of a cache -> OUT_DIR/metrics.json")
    p.add_argument("sae_dir")
    p.add_argument("cache_dir")
    p.add_argument("out_dir")
    p.add_argument("--near-zero-threshold", type=NON_NEGATIVE, default=1e-6)
    p.add_argument("--dead-threshold", type=NON_NEGATIVE, default=0.0)
    p.add_argument("--dataset", choices=["imagenet", "cifar10"], help="the cache's dataset: enables zero-shot fidelity")
    p.add_argument("--root", help="dataset root (with --dataset)")
    p.add_argument("--fixture", action="store_true", help="the root holds a saesuite CIFAR-10 fixture")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_evaluate)


def _add_compare(sub) -> None:
    """``compare CACHE_A SAE_A CACHE_B SAE_B OUT_DIR``: top-k, the chance null, intervals and seed SAEs."""
    p = sub.add_parser("compare", help="top-k overlap and CKA of two models' SAEs -> OUT_DIR/comparison.json")
    for name in ("cache_a", "sae_a", "cache_b", "sae_b", "out_dir"):
        p.add_argument(name)
    # a knob not given keeps CompareSettings' default (saesuite.compare.features; comparison.json records it)
    knob = dict(default=argparse.SUPPRESS)
    p.add_argument("--k", type=POSITIVE_INT, **knob, help="top-k images per feature")
    p.add_argument("--knn-k", type=POSITIVE_INT, **knob, help="neighbours for mutual kNN")
    p.add_argument("--permutations", type=COUNT, **knob, help="permutations of the chance null")
    p.add_argument("--interval-splits", type=COUNT, **knob,
                   help="random splits into two disjoint halves for each score's interval (split-half subsampling; "
                        "0: none)")
    p.add_argument("--interval-level", type=LEVEL, **knob, help="stated coverage of each score's interval")
    p.add_argument("--seed", type=int, **knob)
    p.add_argument("--workers", type=POSITIVE_INT, default=1,
                   help="processes for the null's and the halves' passes (the same numbers at any count)")
    p.add_argument("--seed-saes-a", nargs="+", default=[], metavar="SAE_DIR",
                   help="SAEs of model A trained with other seeds: each score's spread across SAE seeds")
    p.add_argument("--seed-saes-b", nargs="+", default=[], metavar="SAE_DIR",
                   help="as many SAEs of model B, paired with those of A in order")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_compare)


def _add_prefetch_weights(sub) -> None:
    """``prefetch-weights MODEL:TAG...``."""
    p = sub.add_parser("prefetch-weights",
                       help="download open_clip weights through the builder every run uses (container builds)")
    p.add_argument("specs", nargs="+", metavar="MODEL:TAG", help="e.g. RN50:openai ViT-L-14:openai")
    p.set_defaults(func=cmd_prefetch_weights)


def _add_diff_runs(sub) -> None:
    """``diff-runs RUN_A RUN_B``: a tolerances file and the output form."""
    p = sub.add_parser("diff-runs", help="audit two run folders (or a run against a reference): files, numbers, config, packages")
    p.add_argument("run_a", help="a run folder, results/<run>/ (with its provenance.json)")
    p.add_argument("run_b", help="another run folder, or a reference JSON {\"numbers\": {KEY: {\"value\", \"abs\"}}}")
    p.add_argument("--tolerances", metavar="FILE",
                   help='JSON {"numbers": {KEY: {"abs": A, "rel": R}}}: listed numbers may differ that much, '
                        "others are reported but do not fail (default: every value must be equal)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_diff_runs)


# the subcommands in the order --help lists them
SUBCOMMANDS = (
    _add_make_cifar10_fixture,
    _add_cache,
    _add_verify_cache,
    _add_train,
    _add_evaluate,
    _add_compare,
    _add_prefetch_weights,
    _add_diff_runs,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``saesuite`` parser: ``--version`` and one subcommand per stage (:data:`SUBCOMMANDS`)."""
    from saesuite import __version__

    parser = argparse.ArgumentParser(
        prog="saesuite",
        description="Sparse autoencoders on CLIP vision models: cache activations, train, evaluate, compare.",
    )
    parser.add_argument("--version", action="version", version=f"saesuite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)  # None (done) or an exit status (diff-runs: 1 when out of tolerance)
    except SUITE_ERRORS as err:  # the suite's errors and OSError: their message names the path or the fix
        print(f"saesuite {args.command}: error: {describe(err)}", file=sys.stderr)
        return 2
    return code or 0



if __name__ == "__main__":
    sys.exit(main())
