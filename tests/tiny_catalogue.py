"""Write a tiny catalogue (``styles.csv`` and ``images/``) with the quirks of the real one."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"

# Line 3 has two unquoted commas in its name, line 4 empty cells, line 5 an inch mark,
# line 6 a quoted name, and id 2 appears twice.
STYLES_LINES = [
    HEADER,
    "1,Men,Apparel,Topwear,Tshirts,Black,Summer,2011,Casual,Plain Black T-shirt",
    "2,Women,Footwear,Shoes,Heels,Red,Winter,2012,Casual,Red, Blue and Gold Heels, Set",
    "3,Men,Apparel,Topwear,Shirts,,,,NA,Shirt without colour",
    '4,Women,Apparel,Bottomwear,Shorts,Pink,Summer,2011,Sports,Tempo 3.5" Pink Short',
    '5,Men,Accessories,Belts,Belts,Brown,Fall,2016,Formal,"Belt, brown"',
    "2,Women,Footwear,Shoes,Heels,Red,Winter,2012,Casual,Repeated id",
    "6,Men,Apparel,Topwear,Tshirts,White,Summer,2011,Casual,No image for this row",
]

IMAGE_IDS = (1, 2, 3, 4, 5, 99)  # 6 has no image, 99 has no row
CORRUPT_ID = 5


def write_tiny_catalogue(root: Path, corrupt: bool = True) -> Path:
    """Write styles.csv and images/ under ``root`` and return ``root``."""
    images = root / "images"
    images.mkdir(parents=True)
    (root / "styles.csv").write_text("\n".join(STYLES_LINES) + "\n", encoding="utf-8")
    for item_id in IMAGE_IDS:
        Image.new("RGB", (60, 80), (item_id * 40 % 256, 100, 150)).save(images / f"{item_id}.jpg")
    if corrupt:
        data = (images / f"{CORRUPT_ID}.jpg").read_bytes()
        (images / f"{CORRUPT_ID}.jpg").write_bytes(data[: len(data) // 2])
    (images / "notes.txt").write_text("not an image", encoding="utf-8")
    return root
