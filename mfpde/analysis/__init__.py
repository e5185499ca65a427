"""Analysis room: the limit against finite widths (``compare``: errors, rates, figures) and
stored reference solutions with their refinement studies (``references``).

Imports every room below it; nothing imports it but the CLI, sweeps and validation.
"""
