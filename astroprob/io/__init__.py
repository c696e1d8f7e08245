"""astroprob.io: FITS images and cutouts, light curves, catalogs, run directories, units.

Everything that touches files or astropy units lives here: reading FITS images
(with their WCS) and cutting stamps around sky positions, reading SNANA light
curves, writing posterior catalogs and samples (FITS, ECSV) atomically,
exporting samples to ArviZ, and the run directories behind ``astroprob train``
and ``astroprob infer``.

Examples:
    >>> from astroprob.io import cutout
    >>> import numpy as np
    >>> cutout(np.arange(25.0).reshape(5, 5), (3, 3)).data.shape
    (3, 3)
"""

from astroprob.io.arviz import to_inference_data
from astroprob.io.catalogs import (
    posterior_catalog,
    read_samples,
    table_format,
    write_samples,
    write_table,
)
from astroprob.io.fits_images import (
    Cutout,
    FitsImage,
    GalaxyStamp,
    SkyStamps,
    cutout,
    image_pixel_scale,
    read_fits_image,
    read_real_galaxy_catalog,
    sky_stamps,
)
from astroprob.io.lightcurves import (
    LightCurves,
    lightcurves_from_table,
    read_ps1mds_metadata,
    read_snana_fits,
    read_snana_table,
    read_snana_text,
)
from astroprob.io.runs import (
    RunConfig,
    infer_catalog,
    infer_images,
    infer_lightcurves,
    load_run,
    read_positions,
    train_run,
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
    "RunConfig",
    "SkyStamps",
    "angle_to_arcsec",
    "cutout",
    "image_pixel_scale",
    "infer_catalog",
    "infer_images",
    "infer_lightcurves",
    "lightcurves_from_table",
    "load_run",
    "magnitude_to_counts",
    "posterior_catalog",
    "quantity_to_float",
    "read_fits_image",
    "read_positions",
    "read_ps1mds_metadata",
    "read_real_galaxy_catalog",
    "read_samples",
    "read_snana_fits",
    "read_snana_table",
    "read_snana_text",
    "sky_counts_per_pixel",
    "sky_stamps",
    "table_format",
    "to_inference_data",
    "train_run",
    "write_samples",
    "write_table",
]
