"""The seal as it prints: rendered by poppler (pdftoppm) and measured with Pillow — red and
round where the box says, the name embedded as real (subset) text, the cross-page slices
joining into one seal."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw
from pyhanko.pdf_utils.reader import PdfFileReader

from signing.appearance import (
    CrossPagePlacement,
    ImageSeal,
    PagePlacement,
    RoundSeal,
    layout_round_seal,
)
from signing.pades import Level, PadesOptions, sign_pdf
from signing.pdf_errors import AppearanceError, SealImageError
from signing.pdf_verify import VerifyOptions, verify_pdf
from tests.signing.pdf.conftest import PdfPki
from tests.signing.pdf.helpers import A4, have, pdfsig, render

needs_poppler = pytest.mark.skipif(not have("pdftoppm"), reason="poppler-utils not installed")
DPI = 72  # one pixel per point: PDF boxes are pixel boxes (y flipped)
ORG = "青海省人民政府办公厅"


def _is_red(pixel: tuple[int, ...]) -> bool:
    r, g, b = pixel[:3]
    return r > 180 and g < 110 and b < 110


def red_mask(image: Image.Image) -> Image.Image:
    """255 where a pixel is seal red, else 0 (Pillow point operations, no per-pixel Python)."""
    r, g, b = image.convert("RGB").split()
    masks = (r.point(lambda v: 255 if v > 180 else 0), g.point(lambda v: 255 if v < 110 else 0),
             b.point(lambda v: 255 if v < 110 else 0))
    return ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])


def red_count(image: Image.Image) -> int:
    return red_mask(image).histogram()[255]


def _red_in(image: Image.Image, box: tuple[float, float, float, float]) -> tuple[int, int]:
    """(red pixels inside the PDF box, red pixels outside it)."""
    x1, y1, x2, y2 = box
    mask = red_mask(image)
    total = mask.histogram()[255]
    inside = mask.crop((int(x1) - 1, image.height - int(y2) - 1, int(x2) + 2,
                        image.height - int(y1) + 2)).histogram()[255]
    return inside, total - inside


@needs_poppler
def test_round_seal_renders_red_in_its_box(official, services, one_page,
                                           tmp_path: Path) -> None:
    box = (300.0, 200.0, 450.0, 350.0)
    signed = sign_pdf(one_page, official, PadesOptions(
        level=Level.B_B, appearance=RoundSeal(ORG, "合同专用章"),
        placement=PagePlacement(1, box)), services)
    path = tmp_path / "seal.pdf"
    path.write_bytes(signed)
    image = Image.open(render(path, tmp_path / "page", dpi=DPI))
    assert image.size == A4
    inside, outside = _red_in(image, box)
    assert inside > 2000 and outside == 0, (inside, outside)
    # round: the ring touches the box's four edge midpoints, its corners stay white
    rgb = image.convert("RGB")
    top = image.height - 350
    cx, cy = 375, image.height - 275
    assert any(_is_red(rgb.getpixel((cx, top + d))) for d in range(0, 4))
    assert any(_is_red(rgb.getpixel((300 + d, cy))) for d in range(0, 4))
    for corner in ((302, top + 2), (448, top + 2), (302, image.height - 202)):
        assert not _is_red(rgb.getpixel(corner))
    # the star sits in the middle
    assert _is_red(rgb.getpixel((cx, cy)))


@needs_poppler
def test_seal_name_is_text_with_an_embedded_subset_font(official, services, one_page,
                                                        tmp_path: Path) -> None:
    signed = sign_pdf(one_page, official, PadesOptions(
        level=Level.B_B, appearance=RoundSeal(ORG), placement=PagePlacement(1)), services)
    path = tmp_path / "seal.pdf"
    path.write_bytes(signed)
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True,
                           check=True).stdout
    line = next(x for x in fonts.splitlines() if "NotoS" in x)
    assert "CID Type 0C" in line and " yes yes yes" in line  # embedded, subset, ToUnicode
    assert line.split()[0][6] == "+"  # ABCDEF+ subset tag
    widget_text = _annotation_text(signed)
    for ch in ORG:
        assert ch in widget_text


def _annotation_text(signed: bytes) -> str:
    """The seal's characters as the ToUnicode CMap maps them (what a reader copies)."""
    reader = PdfFileReader(io.BytesIO(signed))
    field = reader.root["/AcroForm"]["/Fields"][0].get_object()
    form = field["/AP"]["/N"].get_object()
    seal = form["/Resources"]["/XObject"]["/Seal"].get_object()
    cmap = seal["/Resources"]["/Font"]["/F1"]["/ToUnicode"].get_object().data.decode()
    chars = []
    for line in cmap.splitlines():
        if line.startswith("<") and "> <" in line:
            chars.append(bytes.fromhex(line.split("> <")[1].strip("<> ")).decode("utf-16-be"))
    return "".join(chars)


@needs_poppler
def test_image_seal(pdf_pki: PdfPki, official, services, one_page, tmp_path: Path) -> None:
    """An uploaded PNG with transparency: red where drawn, the page visible elsewhere."""
    png = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(png).ellipse((10, 10, 190, 190), outline=(230, 0, 18, 255), width=14)
    buffer = io.BytesIO()
    png.save(buffer, "PNG")
    box = (100.0, 100.0, 200.0, 200.0)
    signed = sign_pdf(one_page, official, PadesOptions(
        level=Level.B_T, appearance=ImageSeal(buffer.getvalue()),
        placement=PagePlacement(1, box)), services)
    path = tmp_path / "image.pdf"
    path.write_bytes(signed)
    image = Image.open(render(path, tmp_path / "page", dpi=DPI))
    inside, outside = _red_in(image, box)
    assert inside > 300 and outside == 0
    rgb = image.convert("RGB")
    assert rgb.getpixel((150, image.height - 150))[:3] == (255, 255, 255)  # transparent middle
    if have("pdfsig"):
        assert all(s.valid and s.trusted for s in pdfsig(path, pdf_pki.nssdir))


def test_bad_seal_images() -> None:
    with pytest.raises(SealImageError, match="PNG"):
        ImageSeal(b"GIF89a...")
    with pytest.raises(SealImageError, match="empty"):
        ImageSeal(b"")


def test_bad_seal_names() -> None:
    with pytest.raises(AppearanceError):
        RoundSeal("")
    with pytest.raises(AppearanceError):
        RoundSeal("有 空格")
    with pytest.raises(AppearanceError):
        RoundSeal("长" * 41)


LONG_NAME = "青海省西宁市城东区人民政府办公室信息化建设领导小组"


@pytest.mark.parametrize("name", ["办公厅", ORG, LONG_NAME])
def test_layout_keeps_the_name_on_the_arc(name: str) -> None:
    lay = layout_round_seal(RoundSeal(name, "专用章"))
    assert lay.name_span_degrees <= 252
    assert lay.name_radius + lay.name_size * 0.55 < lay.ring_radius - lay.ring_width / 2
    assert lay.name_size >= 7


@needs_poppler
def test_cross_page_seal_slices_join(pdf_pki: PdfPki, seal_key, services, three_pages,
                                     tmp_path: Path) -> None:
    """One signature field, one widget per page at the right edge; the pages' slices, put
    side by side in page order, make one continuous ring."""
    size = 120.0
    signed = sign_pdf(three_pages, seal_key, PadesOptions(
        level=Level.B_LT, appearance=RoundSeal(ORG), placement=CrossPagePlacement(size=size)),
        services)
    reader = PdfFileReader(io.BytesIO(signed))
    fields = reader.root["/AcroForm"]["/Fields"]
    assert len(fields) == 1
    kids = fields[0].get_object()["/Kids"]
    assert len(kids) == 3
    strips = []
    path = tmp_path / "cross.pdf"
    path.write_bytes(signed)
    for page in (1, 2, 3):
        image = Image.open(render(path, tmp_path / f"p{page}", page=page, dpi=DPI))
        width = round(size / 3)
        strip = image.convert("RGB").crop((image.width - width, image.height // 2 - 60,
                                           image.width, image.height // 2 + 60))
        strips.append(strip)
        assert red_count(strip) > 100
        left_of_strip = image.convert("RGB").crop((0, 0, image.width - width - 2,
                                                   image.height))
        assert red_count(left_of_strip) == 0
    joined = Image.new("RGB", (sum(s.width for s in strips), strips[0].height), "white")
    x = 0
    for strip in strips:
        joined.paste(strip, (x, 0))
        x += strip.width
    # the ring's top edge continues across each seam: red on both sides of it
    rows = range(0, 12)
    for seam in (strips[0].width, strips[0].width + strips[1].width):
        left = any(_is_red(joined.getpixel((seam - 2, y))) for y in rows)
        right = any(_is_red(joined.getpixel((seam + 1, y))) for y in rows)
        assert left and right, seam
    report = verify_pdf(signed, VerifyOptions(trust_roots=[pdf_pki.root]))
    assert report.valid, report.as_dict()
    assert len(report.signatures) == 1
