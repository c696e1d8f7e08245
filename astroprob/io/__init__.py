"""astroprob.io: FITS images and cutouts, and astropy units at the edge of the API.

Examples:
    >>> from astroprob.io import cutout
    >>> import numpy as np
    >>> cutout(np.arange(25.0).reshape(5, 5), (3, 3)).data.shape
    (3, 3)
"""

from astroprob.io.fits_images import (
    Cutout,
    FitsImage,
    GalaxyStamp,
    cutout,
    read_fits_image,
    read_real_galaxy_catalog,
)
from astroprob.io.lightcurves import (
    LightCurves,
    read_ps1mds_metadata,
    read_snana_fits,
    read_snana_table,
    read_snana_text,
)
from astroprob.io.units import (
    angle_to_arcsec,
    magnitude_to_counts,
    quantity_to_float,
    sky_counts_per_pixel,
)

__all__ = [
    "Cutout",
    "FitsImage",
    "GalaxyStamp",
    "LightCurves",
    "angle_to_arcsec",
    "cutout",
    "magnitude_to_counts",
    "quantity_to_float",
    "read_fits_image",
    "read_ps1mds_metadata",
    "read_real_galaxy_catalog",
    "read_snana_fits",
    "read_snana_table",
    "read_snana_text",
    "sky_counts_per_pixel",
]
