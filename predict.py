"""Predict the digit in image files with a trained model:
``python predict.py digit.png [--run RUN_ID | --experiment NAME | --model-uri URI]``.

The work is in ``mnist_runner.serving.predict`` (also the `mnist-predict` command); ``--help`` lists the options.
Exit codes: 0 done, 2 a bad image, an unknown run, experiment or model, or a
bad command line.
"""

import sys

from mnist_runner.serving.predict import main

if __name__ == "__main__":
    sys.exit(main())
