"""``python -m attnrec ...`` runs the command line, so ``torchrun --nproc-per-node N -m attnrec train ...`` works."""

from attnrec.cli import main

main()
