"""`ssdtrt import-weights` (torchvision / NVIDIA SSD300 weights → ssdtrt checkpoint) and `ssdtrt init-weights`
(a random-weight checkpoint of a preset: latency does not depend on the weights, and nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("import-weights")(import_weights_cmd)
    app.command("init-weights")(init_weights_cmd)


def init_weights_cmd(
    preset: Annotated[str, typer.Option("--preset", help="Model preset: ssd300-resnet50, ssd300-vgg16, ssd-small.")],
    out: Annotated[Path, typer.Option("--out", help="Destination ssdtrt checkpoint (.pt).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the initialisation.")] = 0,
    score_candidates: Annotated[
        float,
        typer.Option(
            "--score-candidates",
            help="Calibrate the classification heads so about this many scores per image pass the preset's score "
            "threshold, as a trained detector's do (on 4 synthetic images). Plain random heads pass ~80 000 on "
            "SSD300, which makes a latency benchmark's postprocess a stress test. 0: plain random heads.",
        ),
    ] = 1000,
) -> None:
    """Write a randomly initialised checkpoint of a preset (for latency benchmarks and smoke tests; no downloads)."""
    from ssdtrt.cli.common import console
    from ssdtrt.core.config import get_preset

    get_preset(preset)  # an unknown preset fails here with the list of known ones, before torch is imported
    if score_candidates < 0:
        raise typer.BadParameter(f"--score-candidates must be >= 0, got {score_candidates:g}")
    import torch

    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(seed)
    model = build_model(preset).eval()
    init = f"random, seed {seed}"
    if score_candidates > 0:
        from ssdtrt.compare import load_images
        from ssdtrt.model.score_prior import calibrate_score_prior
        from ssdtrt.preprocess.host import preprocess_images

        images = torch.from_numpy(preprocess_images(load_images("synthetic", 4, split="train"), model.spec.preprocess))
        prior = calibrate_score_prior(model, images, score_candidates)
        init += (
            f"; classification heads calibrated: {prior.candidates_per_image:.0f} scores per image > "
            f"{prior.score_threshold:g} (background bias {prior.background_bias:.2f})"
        )
    save_checkpoint(out, model, extra={"init": init})
    n_params = sum(p.numel() for p in model.parameters())
    console().print(f"wrote {out}: preset {preset} with random weights ({init}), {n_params / 1e6:.2f} M parameters")


def import_weights_cmd(
    src: Annotated[Path, typer.Argument(help="Source checkpoint: a state dict, or a dict with 'model'.")],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Source format: 'torchvision' (ssd300_vgg16 → preset ssd300-vgg16) or 'nvidia' "
            "(DeepLearningExamples SSD300 → preset ssd300-resnet50).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Destination ssdtrt checkpoint (.pt).")],
    num_classes: Annotated[
        Optional[int],  # noqa: UP007 - typer needs Optional on older Pythons
        typer.Option(
            "--num-classes",
            help="Classes incl. background (default: the source's). A different count keeps the backbone and box "
            "heads and re-initialises the classification heads.",
        ),
    ] = None,
) -> None:
    """Import foreign SSD300 weights (torchvision ssd300_vgg16 or NVIDIA SSD300) as an ssdtrt checkpoint."""
    from ssdtrt.cli.common import console
    from ssdtrt.model.weights import SOURCE_PRESETS, UnknownWeightsSourceError, convert_weights

    if source not in SOURCE_PRESETS:  # check before touching SRC or importing torch
        raise UnknownWeightsSourceError(
            f"unknown --from {source!r}; choose one of: {', '.join(sorted(SOURCE_PRESETS))}"
        )
    con = console()
    with con.status(f"importing {src} ({source})"):
        result = convert_weights(src, out, source, num_classes=num_classes)
    model = result.model
    n_params = sum(p.numel() for p in model.parameters())
    for note in result.notes:
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
    con.print(
        f"wrote {out}: preset {model.preset}, {model.num_classes} classes (incl. background), "
        f"{n_params / 1e6:.2f} M parameters, priors {model.spec.priors.num_priors}"
    )
