"""``qdiff sample backbones --length 100 -n 10 -o out/``: C-alpha backbones as PDB files.

Writes ``out/backbone_L{length}_{k}.pdb`` (k = 0..n-1): C-alpha ``ATOM`` records, glycine
residues numbered from 1, chain A, readable by biotite, PyMOL, ChimeraX and Mol*. Several
``--length`` values give n chains of each; each batch of chains is written as soon as it is
sampled. Exit code: 0 done, 1 sampling failed (non-finite coordinates), 2 bad arguments, an
unwritable output folder or a model that cannot be loaded, 130 interrupted (Ctrl-C: the chains
finished so far are written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import positive_int
from .sampler_options import add_sampler_arguments, load_model, sampler_from_arguments


def register(kinds) -> None:
    p = kinds.add_parser(
        "backbones",
        help="sample protein C-alpha backbones (bundled DB5.5 model by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--length", type=int, nargs="+", required=True, help="chain length(s)")
    p.add_argument("-n", "--num-samples", type=positive_int, default=10, help="chains per length")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--checkpoint", help="model checkpoint (default: the bundled model)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="chains sampled at once")
    add_sampler_arguments(p, default_steps=100)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..output import check_output

    if min(args.length) < 2 or max(args.length) > 1000:
        print("qdiff sample backbones: need 2 <= --length <= 1000", file=sys.stderr)
        return 2
    check_output(args.output, "dir")  # before the heavy imports: a bad path fails at once

    from ..tasks import generate

    sampler = sampler_from_arguments(args)
    task, model = load_model(args.checkpoint, "backbones", "backbone")
    lengths = [n for n in args.length for _ in range(args.num_samples)]
    out = Path(args.output)
    counts: dict[int, int] = {}
    written = 0
    try:
        for batch in generate(task, model, lengths, sampler, args.seed,
                              batch_size=args.batch_size):
            records = []
            for _, trace in batch:
                k = counts[len(trace)] = counts.get(len(trace), -1) + 1
                records.append((f"backbone_L{len(trace)}_{k}", trace))
            written += task.write(records, out)
    except ValueError as err:  # non-finite or out-of-range coordinates
        print(f"qdiff sample backbones: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: wrote {written} of {len(lengths)} backbones to {out}/",
              file=sys.stderr)
        return 130
    print(f"wrote {written} backbones to {out}/")
    return 0
