"""attnrec: attention-based recommendation.

Importing the package has no side effects: no file I/O, no argv parsing, no global patching.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
