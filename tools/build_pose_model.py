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

Needs only ``pip``, ``numpy`` and ``flatbuffers``. Usage::

    python tools/build_pose_model.py [--out reconstruction/data/pose_landmarker.task] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import struct
import subprocess
import sys
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
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "reconstruction" / "data" / "pose_landmarker.task"
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


def build(out: Path, wheel: Path | None = None) -> Path:
    """Build the bundle at ``out`` (atomically) from ``wheel`` or a freshly downloaded one."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        wheel = wheel or download_wheel(tmp)
        with zipfile.ZipFile(wheel) as zf:
            fb = _load_module("amg_tflite_schema", zf.read(SCHEMAS["tflite_schema"]), tmp)
            md = _load_module("amg_metadata_schema", zf.read(SCHEMAS["metadata_schema"]), tmp)
            members = {}
            for member, (src, mean, std, desc) in MEMBERS.items():
                meta = metadata_buffer(md, Path(member).stem, mean, std, desc)
                members[member] = attach_metadata(fb, zf.read(src), meta)
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
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bundle to write")
    p.add_argument("--wheel", type=Path, default=None, help="an already downloaded mediapipe 0.10.21 wheel")
    args = p.parse_args(argv)
    path = build(args.out, args.wheel)
    print(f"build_pose_model: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
