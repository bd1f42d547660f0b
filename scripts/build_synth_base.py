"""Rebuild θ₀, a synthetic world's base model shipped in ``reasonsift/synth/base_model[_v2]/``.

Pretrains the default recipe of the world from scratch on CPU (deterministic for a given machine and
torch version; v1 about 10 minutes on 2 cores, v2 about 40), writes it into the package, then probes
it: v1, greedy accuracy on held-out facts and first steps; v2, on held-out problems in the terse form
it was pretrained on. The probe is recorded in ``recipe.json`` next to the recipe hash. ``reasonsift
demo`` uses the shipped folder whenever that hash matches the recipe it asks for, so rerun this
script after changing the recipe, the world's tasks or its pretraining corpus (and bump
``CORPUS_VERSION``/``CORPUS_VERSION_V2`` for the latter two).

    .venv/bin/python scripts/build_synth_base.py --world v2         # rebuild and probe
    .venv/bin/python scripts/build_synth_base.py --world v2 --check # only probe the shipped checkpoint
"""

from __future__ import annotations

import argparse
import json
import logging

from reasonsift.config import WORLDS
from reasonsift.synth.probes import probe_base_model, probe_base_model_v2, probe_copying
from reasonsift.synth.world import (
    RECIPE_FILE, BaseRecipe, BaseRecipeV2, recipe_hash, shipped_folder, shipped_hash, write_base_model,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", choices=WORLDS, default="v2")
    parser.add_argument("--check", action="store_true", help="probe the shipped checkpoint, do not rebuild")
    parser.add_argument("--probe-items", type=int, default=None, help="default: v1 1000, v2 160")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    recipe = BaseRecipeV2() if args.world == "v2" else BaseRecipe()
    folder = shipped_folder(recipe)
    if not args.check:
        write_base_model(recipe, folder, progress=True)
    print(f"shipped hash {shipped_hash(folder)}, current recipe hash {recipe_hash(recipe)}")
    if args.world == "v2":
        probe = probe_base_model_v2(folder, n=args.probe_items or 160)
    else:
        probe = probe_base_model(folder, n=args.probe_items or 1000)
    print("greedy accuracy on held-out items:", json.dumps({k: round(v, 3) for k, v in probe.items()}))
    if args.world == "v2":  # can it copy from its context at all? (docs/synth-world-v2.md, change 4)
        copying = probe_copying(folder)
        print("in-context copying, loss per token on random numbers, first occurrence vs repetition:",
              json.dumps({k: round(v, 3) for k, v in copying.items()}))
    if not args.check:
        info = json.loads((folder / RECIPE_FILE).read_text())
        (folder / RECIPE_FILE).write_text(json.dumps({**info, "probe": probe}, indent=2))


if __name__ == "__main__":
    main()
