"""The tiny synthetic run that `nox -s examples` and the notebook tests give every script.

Plain Python with no imports, so that noxfile.py can read it without PyTorch installed."""

SMOKE_ARGS = (
    "--data synthetic --synthetic-images 64 --input-size 16 --batch-size 16 --epochs 2 "
    "--hidden-dim 64 --proj-dim 32 --eval-every 1 --knn-k 10 --num-workers 1"
).split()
