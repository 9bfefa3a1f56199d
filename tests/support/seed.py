"""An independent reader of the seed's markdown tables (model_zoo.md), used to test registry.yaml.

It shares no code with zoo_cli.registry.catalog on purpose: the registry is tested, not trusted.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_SEED = ROOT.parent / "shared" / "seed" / "model_zoo.md"
VENDORED_SEED = ROOT / "tests" / "data" / "model_zoo.md"


def seed_path() -> Path:
    """The shared seed when the checkout sits beside shared/, else the copy kept in tests/data."""
    return SHARED_SEED if SHARED_SEED.is_file() else VENDORED_SEED


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table as (header cells, body rows of cells)."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if "|" in lines[i] and re.match(r"^[\s|:\-]+$", lines[i + 1]) and "-" in lines[i + 1]:
            header = _cells(lines[i])
            body = []
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                body.append(_cells(lines[i]))
                i += 1
            out.append((header, body))
        else:
            i += 1
    return out


def code_blocks_after(text: str, marker: str) -> list[str]:
    """Code blocks (``` fenced) that follow the first occurrence of ``marker``, up to the next heading."""
    start = text.index(marker)
    end = text.find("\n#", start)
    chunk = text[start:end if end != -1 else len(text)]
    return re.findall(r"```\n(.*?)```", chunk, flags=re.S)


def split_br(cell: str) -> list[str]:
    return [part.strip() for part in re.split(r"<br\s*/?>", cell)]


def name_and_url(cell: str) -> tuple[str, str | None]:
    m = re.match(r"^\[([^\]]+)\]\(([^)]+)\)$", cell.strip())
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return cell.strip(), None


def parse_scales(text: str) -> list[float]:
    """'[1.0]' → [1.0]; '[0.5:0.25:1.75]' → 0.5, 0.75, ... 1.75 (inclusive of the end)."""
    inner = text.strip().strip("[]")
    if ":" in inner:
        start, step, end = (float(x) for x in inner.split(":"))
        n = round((end - start) / step)
        return [round(start + k * step, 10) for k in range(n + 1)]
    return [float(x) for x in inner.split(",")]


def parse_number(text: str, unit: str = "") -> float | None:
    """'0.88B' → 0.88, '13.8 ms' → 13.8, '-' → None."""
    text = text.strip()
    if text == "-":
        return None
    return float(text.removesuffix(unit).strip())


def parse_metric(text: str) -> tuple[float, str]:
    """'70.19% (val)' or '77.33 (val)' or '80.25% (**test**)' → (value, split)."""
    m = re.match(r"^([\d.]+)%?\s*\(\**(\w+)\**\)$", text.strip())
    assert m, f"cannot read metric {text!r}"
    return float(m.group(1)), m.group(2)


def seed_checkpoints(text: str) -> dict[str, dict]:
    """name → {'url', 'size_mb', 'details': {...}, 'evals': [...]} from every table of the seed."""
    found: dict[str, dict] = {}
    for header, rows in tables(text):
        head = [re.sub(r"\s+", " ", h).lower() for h in header]
        for cells in rows:
            name, url = name_and_url(cells[0])
            entry = found.setdefault(name, {"url": None, "size_mb": None, "details": {}, "evals": []})
            if url:
                entry["url"] = url
            row = dict(zip(head, cells))
            if "file size" in row:
                entry["size_mb"] = parse_number(row["file size"], "MB")
            if "network backbone" in row:
                entry["details"] = row
            if "eval os" not in row:
                continue
            parts = {k: split_br(v) for k, v in row.items()}
            n = len(parts["eval os"])

            def pick(key: str, k: int) -> str | None:
                values = parts.get(key)
                if values is None:
                    return None
                return values[k] if len(values) == n else values[0]

            for k in range(n):
                miou_key = next(h for h in head if h.endswith("miou"))
                miou, split = parse_metric(pick(miou_key, k))
                madds = pick("multiply-adds", k)
                runtime = pick("runtime (sec)", k)
                latency = pick("simulator latency on pixel 4 edgetpu", k)
                flip = pick("left-right flip", k)
                pixel = pick("pixel-wise accuracy", k)
                entry["evals"].append({
                    "output_stride": int(pick("eval os", k)),
                    "scales": parse_scales(pick("eval scales", k)),
                    "flip": None if flip is None else flip == "Yes",
                    "madds_billion": None if madds is None else parse_number(madds, "B"),
                    "runtime_s": None if runtime is None else parse_number(runtime),
                    "latency_ms": None if latency is None else parse_number(latency, "ms"),
                    "miou": miou,
                    "pixel_accuracy": None if pixel is None else parse_metric(pixel)[0],
                    "split": split,
                })
    return found
