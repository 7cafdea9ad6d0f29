"""``mnist-data mnist fashion_mnist`` (``make data``): fetch, verify and
cache data sets ahead of time, so later runs start offline and at once."""

import argparse
import logging
import sys

from mnist_runner.datasets import DATASETS
from mnist_runner.datasets.loader import DataError, load_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-data", description=__doc__)
    parser.add_argument(
        "names", nargs="+", choices=list(DATASETS), metavar="NAME", help=f"one of {', '.join(DATASETS)}"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    failed = False
    for name in args.names:
        try:
            dataset = load_dataset(name)
        except DataError as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed = True
            continue
        print(
            f"{name}: {len(dataset.y_train)} training and {len(dataset.y_test)} test images "
            f"from {dataset.source}; SHA-256 {dataset.checksum[:16]}..."
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
