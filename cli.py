"""Run evidence-vault from a checkout: ``python cli.py ...``."""

from evidence_vault.cli import main

main()
