"""fraud-demo jobs: small command-line programs run on the node, one per pipeline stage."""

__version__ = "0.2.0"
