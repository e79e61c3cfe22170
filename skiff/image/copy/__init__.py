"""The copy engine: ``copy_image(src_ref, dest_ref, options)``.

Split by concern: ``engine`` (order of work, policy, signatures),
``single`` (one image), ``multi`` (an index), ``blob`` (one blob's stream
chain), ``compression``, ``schema1`` (config synthesis).
"""

from skiff.image.copy.engine import copy_image
from skiff.image.copy.options import BlobResult, CopyOptions, CopyProgress, CopyReport

__all__ = ["BlobResult", "CopyOptions", "CopyProgress", "CopyReport", "copy_image"]
