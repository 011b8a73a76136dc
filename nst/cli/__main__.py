"""`python -m nst.cli ...` (as torchrun runs it): the `nst` command."""
from nst.cli import entry

entry()
