"""vnrecon: learned multi-coil MRI reconstruction with variational networks."""

__version__ = "0.1.0"
