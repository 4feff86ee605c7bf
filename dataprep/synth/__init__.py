"""The embedded synthetic MPII-format dataset (`shg synth`).

No MPII images ship with the project, so it draws its own: articulated 16-joint people (MPII
joint order) with plausible proportions and joint limits, textured limbs painted far to near,
seen from the front or the back at varied scale, position and rotation, on cluttered
backgrounds, sometimes cut by the image border, hidden by objects or standing beside others.
The output is `DIR/images/*.jpg` plus `DIR/annotations.json` in the JSON form of
`mpii_annotations.json.gz` (1-based px, raw objpos/scale, one entry per person) with an extra
`head_box` [x1, y1, x2, y2] per person for PCKh.

Modules: `config` (SynthConfig), `body` (kinematics), `paint` (raster primitives),
`person` (appearance, painting a figure), `scene` (one image and its annotations),
`writer` (`generate`: seeds, worker processes, the JSON writer).
"""

from dataprep.synth.config import SynthConfig

__all__ = ["SynthConfig", "generate"]


def __getattr__(name: str):
    if name == "generate":
        # `generate` pulls in OpenCV; importing it lazily keeps `SynthConfig` cheap to import.
        from dataprep.synth.writer import generate

        return generate
    raise AttributeError(f"module 'dataprep.synth' has no attribute {name!r}")
