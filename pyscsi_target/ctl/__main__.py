"""`python -m pyscsi_target.ctl` is `pyscsi-targetctl`."""

from .cli import main

if __name__ == "__main__":
    main()
