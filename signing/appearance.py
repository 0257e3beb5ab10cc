"""What a seal signature looks like on the page: the round official seal (公章), an uploaded seal
image, or nothing (an invisible signature); where it goes: a page and box, an existing field,
or across the edges of all pages (骑缝章).

The round seal is drawn, not pasted: PDF vector graphics (ring, five-pointed star) and real
text in the department's Chinese name along the upper arc, in a CJK font embedded as a subset
(ISO 32000-2 §9.7: a Type 0 font with a CID-keyed CFF ``FontFile3`` and a ToUnicode CMap, so
the name can be searched and copied, and prints sharp at any size). Real seals follow
GA 241 / the State Council's seal rules: a red ring, the organisation's full name clockwise
along the top, characters upright and facing outwards, a star in the centre and an optional
line below it (专用章 text, a number). The colour is drawn with the Multiply blend mode, as
red ink over black text looks on paper: the text under the seal stays readable.

Fonts: no downloads at run time (DESIGN.md). The first installed of Noto Serif CJK SC Bold,
Noto Sans CJK SC Bold/Regular (Debian ``fonts-noto-cjk``) is used, or the font named by
``GOVPKI_SEAL_FONT`` (``path`` or ``path#face-index``). Subsetting a 20 MB CJK collection
takes ~0.5 s, so the subset for a given set of characters is made once per process and cached.

Placement: a signature field is created for the signature (or an existing empty one is used)
with widget annotations whose normal appearance (``/AP /N``) shows the seal. The cross-page
seal is one signature field with one widget per page (ISO 32000-2 §12.7.4.1: a field may have
several widgets), each showing its vertical slice of the same seal XObject at the page's right
edge: fanned out in page order, the slices join into the whole seal, as on paper.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.writer import BasePdfFileWriter

from signing.pdf_errors import AppearanceError, FieldError, SealImageError

SEAL_RED = (0.90, 0.05, 0.08)
DESIGN = 100.0  # the seal is drawn in a 100 x 100 box and scaled to its widget
DEFAULT_SEAL_PT = 119.0  # 42 mm, the usual diameter of a department's official seal
MAX_SEAL_IMAGE_BYTES = 4 * 1024 * 1024
MAX_SEAL_IMAGE_PIXELS = 4096 * 4096
MAX_NAME_CHARS = 40
FONT_ENV = "GOVPKI_SEAL_FONT"
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSerifCJK-Bold.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSerifCJK-Bold.ttc",
)


# -- what to draw ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundSeal:
    """The red round seal generated from a department's name.

    ``name``: the organisation's full Chinese name, along the upper arc (1-40 characters).
    ``text``: an optional horizontal line under the star (e.g. 合同专用章).
    """

    name: str
    text: str = ""
    color: tuple[float, float, float] = SEAL_RED

    def __post_init__(self) -> None:
        name = self.name.strip() if isinstance(self.name, str) else ""
        if not name:
            raise AppearanceError("a round seal needs the department's name")
        if len(name) > MAX_NAME_CHARS:
            raise AppearanceError(f"a seal name is at most {MAX_NAME_CHARS} characters, "
                                  f"not {len(name)}")
        if any(ch.isspace() or not ch.isprintable() for ch in name):
            raise AppearanceError("a seal name must not contain spaces or control characters")
        if not isinstance(self.text, str) or len(self.text) > MAX_NAME_CHARS or any(
                not ch.isprintable() for ch in self.text):
            raise AppearanceError("the seal's lower text must be at most "
                                  f"{MAX_NAME_CHARS} printable characters")
        if not all(0.0 <= c <= 1.0 for c in self.color) or len(self.color) != 3:
            raise AppearanceError("the seal colour is three RGB values between 0 and 1")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "text", self.text.strip())


@dataclass(frozen=True)
class ImageSeal:
    """An uploaded seal image: PNG with transparency (or JPEG), drawn as it is."""

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray) or not self.data:
            raise SealImageError("the seal image is empty")
        if len(self.data) > MAX_SEAL_IMAGE_BYTES:
            raise SealImageError(f"the seal image is {len(self.data)} bytes; at most "
                                 f"{MAX_SEAL_IMAGE_BYTES} are accepted")
        if not (self.data.startswith(b"\x89PNG\r\n\x1a\n") or self.data.startswith(b"\xff\xd8")):
            raise SealImageError("the seal image must be a PNG (with transparency) or a JPEG")


Appearance = RoundSeal | ImageSeal


# -- where to put it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PagePlacement:
    """``page`` is 1-based (-1 is the last page); ``box`` is (x1, y1, x2, y2) in PDF points
    from the page's lower-left corner. Without a box the seal goes to the lower right, where a
    Chinese official paper has its issuing organisation and date."""

    page: int = -1
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.page, int) or self.page == 0:
            raise FieldError("pages are numbered from 1 (or -1 for the last page)")
        if self.box is not None:
            if len(self.box) != 4 or not all(isinstance(v, int | float) for v in self.box):
                raise FieldError("a box is four numbers: x1,y1,x2,y2")
            x1, y1, x2, y2 = self.box
            if not all(math.isfinite(v) for v in self.box) or x2 - x1 < 1 or y2 - y1 < 1:
                raise FieldError(f"the box {x1:g},{y1:g},{x2:g},{y2:g} is empty: give "
                                 f"x1 < x2 and y1 < y2")


@dataclass(frozen=True)
class FieldPlacement:
    """An existing, empty signature field (prepared by the document's author)."""

    field_name: str


@dataclass(frozen=True)
class CrossPagePlacement:
    """The cross-page seal: one widget per page at the right edge. ``y`` is the height of
    the seal's centre (default: the middle of each page), ``size`` its diameter."""

    size: float = DEFAULT_SEAL_PT
    y: float | None = None

    def __post_init__(self) -> None:
        if not (20 <= self.size <= 600):
            raise FieldError("a cross-page seal is 20 to 600 points wide")


Placement = PagePlacement | FieldPlacement | CrossPagePlacement


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x1,y1,x2,y2"`` from the command line."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise FieldError(f"--box takes four numbers x1,y1,x2,y2, not {text!r}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise FieldError(f"--box takes four numbers x1,y1,x2,y2, not {text!r}") from None
    return values[0], values[1], values[2], values[3]


# -- the font --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Glyph:
    cid: int
    advance: float  # in font units


@dataclass(frozen=True)
class SealFont:
    """A subset of a CJK font for one set of characters, ready to embed."""

    ps_name: str
    program: bytes  # CFF (CIDFontType0C) or TrueType (FontFile2)
    cff: bool
    units_per_em: int
    ascent: int
    descent: int
    bbox: tuple[int, int, int, int]
    ros: tuple[str, str, int]
    glyphs: dict[str, _Glyph]

    @property
    def em_middle(self) -> float:
        """Middle of the ideographic em box in font units (Noto CJK: (880 - 120) / 2)."""
        return (self.ascent + self.descent) / 2


def _font_source() -> tuple[str, int | None]:
    override = os.environ.get(FONT_ENV)
    if override:
        path, _, index = override.partition("#")
        if not Path(path).is_file():
            raise AppearanceError(f"{FONT_ENV} names {path}, which does not exist")
        return path, int(index) if index else None
    for path in FONT_CANDIDATES:
        if Path(path).is_file():
            return path, None
    raise AppearanceError("no CJK font is installed for the seal (install fonts-noto-cjk, or "
                          f"set {FONT_ENV})")


def _open_face(path: str, index: int | None) -> Any:
    from fontTools.ttLib import TTCollection, TTFont  # type: ignore[import-untyped]

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"ttcf":
        collection = TTCollection(path, lazy=True)
        if index is None:  # the Simplified Chinese face of a CJK collection
            index = 0
            for i, face in enumerate(collection.fonts):
                family = str(face["name"].getDebugName(1) or "")
                if family.endswith(" SC") or "Simplified" in family:
                    index = i
                    break
        return collection.fonts[index]
    return TTFont(path, lazy=True)


@functools.lru_cache(maxsize=64)
def seal_font(chars: str) -> SealFont:
    """The subset font for ``chars`` (every character must be in the font)."""
    from fontTools import subset  # type: ignore[import-untyped]

    path, index = _font_source()
    try:
        face = _open_face(path, index)
        cmap = face.getBestCmap()
        missing = sorted({ch for ch in chars if ord(ch) not in cmap})
        if missing:
            raise AppearanceError(f"the seal font has no glyph for {''.join(missing)!r}")
        ps_name = str(face["name"].getDebugName(6) or "CJKSeal").replace(" ", "")
        options = subset.Options()
        options.layout_features = []
        options.name_IDs = []
        options.notdef_outline = True
        options.drop_tables += ["GPOS", "GSUB", "GDEF", "BASE", "VORG", "vhea", "vmtx",
                                "DSIG", "JSTF", "MATH"]
        is_cff = "CFF " in face
        if not is_cff:
            options.retain_gids = True
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=chars)
        subsetter.subset(face)
        cmap = face.getBestCmap()
        hmtx = face["hmtx"]
        glyphs: dict[str, _Glyph] = {}
        if is_cff:
            top = face["CFF "].cff[0]
            ros = getattr(top, "ROS", None)
            if ros is None:
                raise AppearanceError(f"{path} is not a CID-keyed CJK font")
            program = face["CFF "].compile(face)
            for ch in set(chars):
                name = cmap[ord(ch)]
                cid = int(name[3:]) if name.startswith("cid") else face.getGlyphID(name)
                glyphs[ch] = _Glyph(cid, float(hmtx[name][0]))
            ros_t = (str(ros[0]), str(ros[1]), int(ros[2]))
        else:
            buffer = io.BytesIO()
            face.save(buffer)
            program = buffer.getvalue()
            for ch in set(chars):
                name = cmap[ord(ch)]
                glyphs[ch] = _Glyph(face.getGlyphID(name), float(hmtx[name][0]))
            ros_t = ("Adobe", "Identity", 0)
        head = face["head"]
        os2 = face["OS/2"]
        return SealFont(ps_name=ps_name, program=program, cff=is_cff,
                        units_per_em=int(head.unitsPerEm),
                        ascent=int(os2.sTypoAscender), descent=int(os2.sTypoDescender),
                        bbox=(int(head.xMin), int(head.yMin), int(head.xMax), int(head.yMax)),
                        ros=ros_t, glyphs=glyphs)
    except AppearanceError:
        raise
    except Exception as exc:
        raise AppearanceError(f"cannot prepare the seal font {path}: {exc}") from None


def _subset_tag(font: SealFont) -> str:
    digest = hashlib.sha256(font.program).digest()
    return "".join(string.ascii_uppercase[b % 26] for b in digest[:6])


def embed_font(writer: BasePdfFileWriter, font: SealFont) -> generic.IndirectObject:
    """Type 0 font over a CIDFontType0 (CFF) or CIDFontType2 (TrueType), Identity-H."""
    name = f"{_subset_tag(font)}+{font.ps_name}"
    scale = 1000.0 / font.units_per_em
    program = generic.StreamObject(stream_data=font.program)
    if font.cff:
        program[pdf_name("/Subtype")] = pdf_name("/CIDFontType0C")
    else:
        program[pdf_name("/Length1")] = generic.NumberObject(len(font.program))
    program.compress()
    descriptor = generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/FontDescriptor"),
        pdf_name("/FontName"): pdf_name("/" + name),
        pdf_name("/Flags"): generic.NumberObject(4),
        pdf_name("/FontBBox"): generic.ArrayObject(
            [generic.NumberObject(round(v * scale)) for v in font.bbox]),
        pdf_name("/ItalicAngle"): generic.NumberObject(0),
        pdf_name("/Ascent"): generic.NumberObject(round(font.ascent * scale)),
        pdf_name("/Descent"): generic.NumberObject(round(font.descent * scale)),
        pdf_name("/CapHeight"): generic.NumberObject(round(font.ascent * scale)),
        pdf_name("/StemV"): generic.NumberObject(120),
        pdf_name("/FontFile3" if font.cff else "/FontFile2"): writer.add_object(program),
    })
    widths = generic.ArrayObject()
    for glyph in sorted({g.cid: g for g in font.glyphs.values()}.values(), key=lambda g: g.cid):
        widths.append(generic.NumberObject(glyph.cid))
        widths.append(generic.ArrayObject([generic.FloatObject(round(glyph.advance * scale, 2))]))
    registry, ordering, supplement = font.ros
    cid_font = generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"),
        pdf_name("/Subtype"): pdf_name("/CIDFontType0" if font.cff else "/CIDFontType2"),
        pdf_name("/BaseFont"): pdf_name("/" + name),
        pdf_name("/CIDSystemInfo"): generic.DictionaryObject({
            pdf_name("/Registry"): generic.TextStringObject(registry),
            pdf_name("/Ordering"): generic.TextStringObject(ordering),
            pdf_name("/Supplement"): generic.NumberObject(supplement),
        }),
        pdf_name("/FontDescriptor"): writer.add_object(descriptor),
        pdf_name("/DW"): generic.NumberObject(1000),
        pdf_name("/W"): widths,
    })
    if not font.cff:
        cid_font[pdf_name("/CIDToGIDMap")] = pdf_name("/Identity")
    lines = [f"<{g.cid:04X}> <{ch.encode('utf-16-be').hex().upper()}>"
             for ch, g in sorted(font.glyphs.items(), key=lambda kv: kv[1].cid)]
    cmap = ("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
            f"{len(lines)} beginbfchar\n" + "\n".join(lines) + "\nendbfchar\n"
            "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
    to_unicode = generic.StreamObject(stream_data=cmap.encode("ascii"))
    to_unicode.compress()
    type0 = generic.DictionaryObject({
        pdf_name("/Type"): pdf_name("/Font"),
        pdf_name("/Subtype"): pdf_name("/Type0"),
        pdf_name("/BaseFont"): pdf_name(f"/{name}-Identity-H"),
        pdf_name("/Encoding"): pdf_name("/Identity-H"),
        pdf_name("/DescendantFonts"): generic.ArrayObject([writer.add_object(cid_font)]),
        pdf_name("/ToUnicode"): writer.add_object(to_unicode),
    })
    return writer.add_object(type0)


# -- drawing the round seal -----------------------------------------------------------------------


def _n(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _circle(cx: float, cy: float, r: float) -> str:
    k = 0.5522847498 * r
    return (f"{_n(cx + r)} {_n(cy)} m "
            f"{_n(cx + r)} {_n(cy + k)} {_n(cx + k)} {_n(cy + r)} {_n(cx)} {_n(cy + r)} c "
            f"{_n(cx - k)} {_n(cy + r)} {_n(cx - r)} {_n(cy + k)} {_n(cx - r)} {_n(cy)} c "
            f"{_n(cx - r)} {_n(cy - k)} {_n(cx - k)} {_n(cy - r)} {_n(cx)} {_n(cy - r)} c "
            f"{_n(cx + k)} {_n(cy - r)} {_n(cx + r)} {_n(cy - k)} {_n(cx + r)} {_n(cy)} c h")


def _star(cx: float, cy: float, r_outer: float) -> str:
    r_inner = r_outer * math.sin(math.radians(18)) / math.sin(math.radians(54))
    points = []
    for i in range(10):
        r = r_outer if i % 2 == 0 else r_inner
        angle = math.radians(90 + i * 36)
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    path = f"{_n(points[0][0])} {_n(points[0][1])} m " + " ".join(
        f"{_n(x)} {_n(y)} l" for x, y in points[1:])
    return path + " h"


@dataclass(frozen=True)
class SealLayout:
    """Geometry of one round seal in the 100-unit design box (also what tests check)."""

    ring_radius: float
    ring_width: float
    star_radius: float
    name_size: float
    name_radius: float
    name_span_degrees: float
    name_hscale: float
    text_size: float
    text_baseline: float


def layout_round_seal(seal: RoundSeal) -> SealLayout:
    c = DESIGN / 2
    ring_width = 3.2
    ring_radius = c - ring_width / 2 - 0.4
    inner = ring_radius - ring_width / 2
    n = len(seal.name)
    max_span = math.radians(250 if n > 6 else 200)
    size = 17.0 if n <= 8 else 15.5
    hscale = 1.0 if n <= 12 else 0.82
    for _ in range(4):
        radius = inner - 2.2 - size * 0.52
        step = size * hscale * 1.08 / radius
        if n * step <= max_span or size <= 7:
            break
        size = max(7.0, size * max_span / (n * step))
    radius = inner - 2.2 - size * 0.52
    step = size * hscale * 1.08 / radius
    span = max(n * step, math.radians(min(110, 40 * n)) if n > 1 else 0.0)
    text_size = 0.0
    baseline = 0.0
    if seal.text:
        text_size = 9.5
        baseline = c - 33.0
        half_chord = math.sqrt(max(inner ** 2 - (c - baseline) ** 2, 1.0)) - 3.0
        needed = len(seal.text) * text_size / 2
        if needed > half_chord:
            text_size = max(5.0, text_size * half_chord / needed)
    return SealLayout(ring_radius=ring_radius, ring_width=ring_width, star_radius=16.0,
                      name_size=size, name_radius=radius,
                      name_span_degrees=math.degrees(span), name_hscale=hscale,
                      text_size=text_size, text_baseline=baseline)


def round_seal_content(seal: RoundSeal, font: SealFont, font_resource: str = "/F1") -> bytes:
    """Content stream of the seal in the 100 x 100 design box."""
    lay = layout_round_seal(seal)
    c = DESIGN / 2
    r, g, b = seal.color
    upm = font.units_per_em
    ops = ["q /GSSeal gs", f"{_n(r)} {_n(g)} {_n(b)} RG {_n(r)} {_n(g)} {_n(b)} rg",
           f"{_n(lay.ring_width)} w", _circle(c, c, lay.ring_radius) + " S",
           _star(c, c + 1.0, lay.star_radius) + " f", "BT"]
    n = len(seal.name)
    span = math.radians(lay.name_span_degrees)
    size = lay.name_size
    for i, ch in enumerate(seal.name):
        glyph = font.glyphs[ch]
        # Clockwise from the left end of the arc; each character upright, facing outwards.
        phi = math.pi / 2 + span / 2 - (i + 0.5) * span / n
        alpha = phi - math.pi / 2
        cx = c + lay.name_radius * math.cos(phi)
        cy = c + lay.name_radius * math.sin(phi)
        half_w = glyph.advance / upm * size * lay.name_hscale / 2
        mid = font.em_middle / upm * size
        cos_a, sin_a = math.cos(alpha), math.sin(alpha)
        # the glyph origin sits half an advance left of and "mid" below the centre, rotated
        ox = cx - half_w * cos_a + mid * sin_a
        oy = cy - half_w * sin_a - mid * cos_a
        h = lay.name_hscale
        ops.append(f"{font_resource} {_n(size)} Tf {_n(cos_a * h)} {_n(sin_a * h)} "
                   f"{_n(-sin_a)} {_n(cos_a)} {_n(ox)} {_n(oy)} Tm <{glyph.cid:04X}> Tj")
    if seal.text:
        size = lay.text_size
        total = sum(font.glyphs[ch].advance for ch in seal.text) / upm * size
        x = c - total / 2
        for ch in seal.text:
            glyph = font.glyphs[ch]
            ops.append(f"{font_resource} {_n(size)} Tf 1 0 0 1 {_n(x)} {_n(lay.text_baseline)} "
                       f"Tm <{glyph.cid:04X}> Tj")
            x += glyph.advance / upm * size
    ops += ["ET", "Q"]
    return "\n".join(ops).encode("ascii")


def _form(bbox: Sequence[float], content: bytes, resources: generic.DictionaryObject
          ) -> generic.StreamObject:
    stream = generic.StreamObject({
        pdf_name("/Type"): pdf_name("/XObject"),
        pdf_name("/Subtype"): pdf_name("/Form"),
        pdf_name("/BBox"): generic.ArrayObject([generic.FloatObject(v) for v in bbox]),
        pdf_name("/Resources"): resources,
    }, stream_data=content)
    stream.compress()
    return stream


def _multiply_gs() -> generic.DictionaryObject:
    return generic.DictionaryObject({
        pdf_name("/GSSeal"): generic.DictionaryObject({
            pdf_name("/Type"): pdf_name("/ExtGState"),
            pdf_name("/BM"): pdf_name("/Multiply"),
        })
    })


@dataclass(frozen=True)
class SealObject:
    """A seal XObject in a writer and its natural size (design units)."""

    ref: generic.IndirectObject
    width: float
    height: float


def add_seal_xobject(writer: BasePdfFileWriter, appearance: Appearance) -> SealObject:
    """Write the seal once into ``writer``; widgets then draw it with ``Do``."""
    if isinstance(appearance, RoundSeal):
        chars = "".join(sorted(set(appearance.name + appearance.text)))
        font = seal_font(chars)
        font_ref = embed_font(writer, font)
        resources = generic.DictionaryObject({
            pdf_name("/Font"): generic.DictionaryObject({pdf_name("/F1"): font_ref}),
            pdf_name("/ExtGState"): _multiply_gs(),
        })
        content = round_seal_content(appearance, font)
        ref = writer.add_object(_form((0, 0, DESIGN, DESIGN), content, resources))
        return SealObject(ref, DESIGN, DESIGN)
    return _image_xobject(writer, appearance)


def _image_xobject(writer: BasePdfFileWriter, seal: ImageSeal) -> SealObject:
    from PIL import Image, UnidentifiedImageError
    from pyhanko.pdf_utils.images import pil_image

    try:
        image: Image.Image = Image.open(io.BytesIO(bytes(seal.data)))
        if image.width * image.height > MAX_SEAL_IMAGE_PIXELS:
            raise SealImageError(f"the seal image is {image.width}x{image.height} pixels; at "
                                 f"most {MAX_SEAL_IMAGE_PIXELS} pixels are accepted")
        image.load()
    except SealImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SealImageError(f"the seal image cannot be read: {exc}") from None
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info
                              else "RGB")
    image_ref = pil_image(image, writer)
    w, h = float(image.width), float(image.height)
    scale = DESIGN / max(w, h)
    width, height = w * scale, h * scale
    resources = generic.DictionaryObject({
        pdf_name("/XObject"): generic.DictionaryObject({pdf_name("/Img"): image_ref}),
        pdf_name("/ExtGState"): _multiply_gs(),
    })
    content = f"q /GSSeal gs {_n(width)} 0 0 {_n(height)} 0 0 cm /Img Do Q".encode("ascii")
    ref = writer.add_object(_form((0, 0, width, height), content, resources))
    return SealObject(ref, width, height)


def widget_appearance(writer: BasePdfFileWriter, seal: SealObject, width: float,
                      height: float) -> generic.IndirectObject:
    """A widget's normal appearance: the seal fitted into (width x height), centred."""
    scale = min(width / seal.width, height / seal.height)
    tx = (width - seal.width * scale) / 2
    ty = (height - seal.height * scale) / 2
    content = (f"q {_n(scale)} 0 0 {_n(scale)} {_n(tx)} {_n(ty)} cm /Seal Do Q"
               .encode("ascii"))
    resources = generic.DictionaryObject({
        pdf_name("/XObject"): generic.DictionaryObject({pdf_name("/Seal"): seal.ref})})
    return writer.add_object(_form((0, 0, width, height), content, resources))


def slice_appearance(writer: BasePdfFileWriter, seal: SealObject, size: float, index: int,
                     count: int) -> tuple[generic.IndirectObject, float]:
    """The ``index``-th of ``count`` vertical slices of the seal drawn ``size`` wide: the
    appearance and the slice's width. Slice i shows seal x in [i, i+1) * size / count."""
    slice_w = size / count
    scale = size / max(seal.width, seal.height)
    height = seal.height * scale
    content = (f"q 0 0 {_n(slice_w)} {_n(height)} re W n "
               f"{_n(scale)} 0 0 {_n(scale)} {_n(-index * slice_w)} 0 cm /Seal Do Q"
               .encode("ascii"))
    resources = generic.DictionaryObject({
        pdf_name("/XObject"): generic.DictionaryObject({pdf_name("/Seal"): seal.ref})})
    return writer.add_object(_form((0, 0, slice_w, height), content, resources)), slice_w


def set_normal_appearance(widget: generic.DictionaryObject, ap_ref: generic.IndirectObject
                          ) -> None:
    widget[pdf_name("/AP")] = generic.DictionaryObject({pdf_name("/N"): ap_ref})
