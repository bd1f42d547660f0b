"""Rebuild θ₀, the synthetic world's base model shipped in ``reasonsift/synth/base_model/``.

Pretrains the default ``BaseRecipe`` from scratch on CPU (deterministic for a given machine and
torch version; about 10 minutes on 2 cores), writes it into the package, then probes it: greedy
accuracy on held-out facts and first steps, recorded in ``recipe.json`` next to the recipe hash.
``reasonsift demo`` uses the shipped folder whenever that hash matches the recipe it asks for, so
rerun this script after changing the recipe, ``tasks.py`` or the pretraining corpus (and bump
``CORPUS_VERSION`` for the latter two).

    .venv/bin/python scripts/build_synth_base.py            # rebuild and probe
    .venv/bin/python scripts/build_synth_base.py --check    # only probe the shipped checkpoint
"""

from __future__ import annotations

import argparse
import json
import logging

from reasonsift.synth.world import RECIPE_FILE, SHIPPED, BaseRecipe, probe_base_model, recipe_hash, shipped_hash, write_base_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="probe the shipped checkpoint, do not rebuild")
    parser.add_argument("--probe-items", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    recipe = BaseRecipe()
    if not args.check:
        write_base_model(recipe, SHIPPED, progress=True)
    print(f"shipped hash {shipped_hash()}, current recipe hash {recipe_hash(recipe)}")
    probe = probe_base_model(SHIPPED, n=args.probe_items)
    print("greedy accuracy on held-out items:", json.dumps({k: round(v, 3) for k, v in probe.items()}))
    if not args.check:
        info = json.loads((SHIPPED / RECIPE_FILE).read_text())
        (SHIPPED / RECIPE_FILE).write_text(json.dumps({**info, "probe": probe}, indent=2))


if __name__ == "__main__":
    main()
