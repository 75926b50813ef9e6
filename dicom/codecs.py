"""Which decoder pydicom uses for each compressed transfer syntax, chosen for its licence.

pydicom 3 picks the first available plugin per syntax unless told otherwise. Left alone it would
prefer ``pylibjpeg`` (backed by pylibjpeg-libjpeg, GPLv3) for JPEG and JPEG-LS whenever that
package is installed, which would make a GPL library part of every deployment. We name the
plugin explicitly instead:

- JPEG baseline, extended and lossless: ``gdcm`` (python-gdcm, BSD licence). The one gap:
  pydicom refuses GDCM for 12-bit JPEG Extended (Process 4, a known GDCM defect), so those
  files go through dcmtk's ``dcmdjpeg`` (BSD licence, a system dependency of the project) in
  a subprocess, or through the GPL extra when it is installed.
- JPEG-LS: ``pyjpegls`` (MIT, CharLS inside).
- JPEG 2000: ``pylibjpeg`` with pylibjpeg-openjpeg (MIT, OpenJPEG's BSD-2 licence).
- RLE: ``pylibjpeg`` with pylibjpeg-rle (MIT), which is much faster than pydicom's own.
- Uncompressed and deflated syntaxes need no plugin.

pylibjpeg-libjpeg therefore stays an optional extra (``gpl-codecs``), selected only for 12-bit
JPEG Extended, which no permissively licensed plugin of pydicom decodes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom import Dataset, uid
from pydicom.pixels import get_decoder

from dicom.errors import TruncatedError, UnsupportedTransferSyntaxError

_GDCM = "gdcm"
_PYJPEGLS = "pyjpegls"
_PYLIBJPEG = "pylibjpeg"
DCMTK_DECODER = "dcmtk"  # not a pydicom plugin: decode_with_dcmtk runs dcmdjpeg

PLUGIN_FOR_SYNTAX: dict[str, str] = {
    uid.JPEGBaseline8Bit: _GDCM,
    uid.JPEGExtended12Bit: _GDCM,
    uid.JPEGLossless: _GDCM,
    uid.JPEGLosslessSV1: _GDCM,
    uid.JPEGLSLossless: _PYJPEGLS,
    uid.JPEGLSNearLossless: _PYJPEGLS,
    uid.JPEG2000Lossless: _PYLIBJPEG,
    uid.JPEG2000: _PYLIBJPEG,
    uid.RLELossless: _PYLIBJPEG,
}
NATIVE_SYNTAXES = frozenset(
    {
        uid.ImplicitVRLittleEndian,
        uid.ExplicitVRLittleEndian,
        uid.ExplicitVRBigEndian,
        uid.DeflatedExplicitVRLittleEndian,
    }
)


def syntax_name(transfer_syntax: str) -> str:
    """A transfer syntax as a person reads it: its name and UID."""
    name = uid.UID(transfer_syntax).name
    return f"'{name}' ({transfer_syntax})" if name != transfer_syntax else f"({transfer_syntax})"


def decoding_plugin(transfer_syntax: str, bits_stored: int = 8) -> str:
    """The pydicom plugin name to decode ``transfer_syntax`` with ('' for native syntaxes).

    Raises
    ------
    UnsupportedTransferSyntaxError
        When the syntax is not one we decode, or its chosen plugin is not installed.
    """
    if transfer_syntax in NATIVE_SYNTAXES:
        return ""
    plugin = PLUGIN_FOR_SYNTAX.get(transfer_syntax)
    if transfer_syntax == uid.JPEGExtended12Bit and bits_stored > 8:
        return _twelve_bit_jpeg_decoder()
    if plugin is None:
        raise UnsupportedTransferSyntaxError(
            f"(0002,0010) TransferSyntaxUID {syntax_name(transfer_syntax)} is not supported; "
            "convert the file to explicit VR little endian, JPEG, JPEG-LS, JPEG 2000 or RLE "
            "(e.g. with dcmdjpeg or gdcmconv) and send it again"
        )
    if plugin not in get_decoder(transfer_syntax).available_plugins:
        raise UnsupportedTransferSyntaxError(
            f"(0002,0010) TransferSyntaxUID {syntax_name(transfer_syntax)} needs the pydicom "
            f"plugin {plugin!r}, which is not installed; install the project's dependencies"
        )
    return plugin


def _twelve_bit_jpeg_decoder() -> str:
    """'pylibjpeg' when the GPL extra is installed, else DCMTK_DECODER when dcmdjpeg exists."""
    if _PYLIBJPEG in get_decoder(uid.JPEGExtended12Bit).available_plugins:
        return _PYLIBJPEG
    if shutil.which("dcmdjpeg"):
        return DCMTK_DECODER
    raise UnsupportedTransferSyntaxError(
        f"(0002,0010) TransferSyntaxUID {syntax_name(uid.JPEGExtended12Bit)} with more than 8 "
        "bits needs dcmtk's dcmdjpeg or the optional extra 'gpl-codecs' (pylibjpeg-libjpeg); "
        "install one, or convert the file with dcmdjpeg"
    )


def decode_with_dcmtk(ds: Dataset) -> np.ndarray:
    """Stored values decoded by dcmtk's ``dcmdjpeg`` in a subprocess (files in a temp folder).

    Raises
    ------
    TruncatedError
        When dcmdjpeg cannot decompress the pixel data.
    """
    with tempfile.TemporaryDirectory(prefix="echocxr-dcmdjpeg-") as folder:
        source, target = Path(folder) / "in.dcm", Path(folder) / "out.dcm"
        ds.save_as(source, enforce_file_format=True)
        result = subprocess.run(
            ["dcmdjpeg", str(source), str(target)], capture_output=True, timeout=120, check=False
        )
        if result.returncode != 0 or not target.is_file():
            raise TruncatedError(
                f"(7FE0,0010) PixelData in {syntax_name(uid.JPEGExtended12Bit)} could not be "
                "decoded by dcmdjpeg; the file is truncated or corrupt: export it again"
            )
        return np.asarray(pydicom.dcmread(target).pixel_array)
