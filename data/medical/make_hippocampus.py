"""Copy a small subset of MSD Task04 (hippocampus) into ``data/medical/hippocampus`` in the MSD layout.

The Medical Segmentation Decathlon data is CC BY-SA 4.0 (Simpson et al. 2019, Antonelli et al. 2022), so a
handful of cases may ship with attnlab for ``make demo`` and the tests, with the attribution in
``data/medical/README.md``. This script documents exactly which cases were taken and how; it copies the
files byte for byte (never modifies the source) and writes an MSD ``dataset.json`` next to them.

It also writes ``data/medical/hippocampus_full.json``, a datalist of *all* labelled cases of the shared copy
(``../shared/data/medical/msd_hippocampus/{images,labels}``) with paths relative to that folder, so the
full-data configs read the cases in place (``--data.root ../shared/data/medical/msd_hippocampus``).

Usage::

    python data/medical/make_hippocampus.py --source ../shared/data/medical/msd_hippocampus
"""

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = {"0": "background", "1": "Anterior", "2": "Posterior"}
DESCRIPTION = {
    "name": "Hippocampus",
    "description": "Left and right hippocampus segmentation (MSD Task04), attnlab embedded subset",
    "reference": "Vanderbilt University Medical Center; Medical Segmentation Decathlon",
    "licence": "CC-BY-SA 4.0",
    "tensorImageSize": "3D",
    "modality": {"0": "MRI"},
    "labels": LABELS,
}


def labelled_cases(source: Path) -> list[str]:
    """Case file names that have both an image and a label in ``source/{images,labels}``."""
    images = {p.name for p in (source / "images").glob("*.nii.gz")}
    labels = {p.name for p in (source / "labels").glob("*.nii.gz")}
    return sorted(images & labels)


def main() -> None:
    """Copy ``--num-cases`` cases and write both datalists."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    shared = HERE.parents[1].parent / "shared" / "data" / "medical" / "msd_hippocampus"
    parser.add_argument("--source", type=Path, default=shared)
    parser.add_argument("--out", type=Path, default=HERE / "hippocampus")
    parser.add_argument("--num-cases", type=int, default=12)
    args = parser.parse_args()

    cases = labelled_cases(args.source)
    if len(cases) < args.num_cases:
        raise SystemExit(f"{args.source}: only {len(cases)} labelled cases, need {args.num_cases}")
    for sub in ("imagesTr", "labelsTr"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    chosen = cases[: args.num_cases]
    for name in chosen:
        shutil.copyfile(args.source / "images" / name, args.out / "imagesTr" / name)
        shutil.copyfile(args.source / "labels" / name, args.out / "labelsTr" / name)
    entries = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in chosen]
    embedded = {**DESCRIPTION, "numTraining": len(entries), "numTest": 0, "training": entries, "test": []}
    (args.out / "dataset.json").write_text(json.dumps(embedded, indent=2) + "\n")

    full = [{"image": f"images/{n}", "label": f"labels/{n}"} for n in cases]
    datalist = {**DESCRIPTION, "description": "MSD Task04 hippocampus, all labelled cases of the shared copy"}
    datalist |= {"numTraining": len(full), "numTest": 0, "training": full, "test": []}
    (HERE / "hippocampus_full.json").write_text(json.dumps(datalist, indent=2) + "\n")
    print(f"copied {len(chosen)} cases to {args.out}; datalist of {len(full)} cases in hippocampus_full.json")


if __name__ == "__main__":
    main()
