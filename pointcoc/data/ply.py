"""``.ply`` point clouds and meshes (ascii and binary): vertices and, when present, triangulated faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .mesh import fan_triangulate

PLY_HINT = "export it again as PLY with float x, y, z vertex properties"
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
# A header element is (name, count, properties); a property is (name, numpy type) for a scalar or
# (name, (count type, item type)) for a list.
Element = tuple[str, int, list]


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[V, 3]`` float64 and triangles ``[F, 3]`` int64 (``[0, 3]`` for a bare point cloud).

    Polygons are fan-triangulated; other elements and properties (normals, colours, edges) are read past.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if not raw.startswith(b"ply") or b"end_header" not in raw:
            raise ValueError("no 'ply' header ending in 'end_header'")
        header, body = raw.split(b"end_header", 1)
        fmt, elements = _parse_header(header.decode("ascii"))
        body = body[body.index(b"\n") + 1 :]
        if fmt == "ascii":
            data = _read_ascii(body, elements)
        else:
            data = _read_binary(body, elements, "<" if fmt == "binary_little_endian" else ">")
        vertex = data["vertex"]
        vertices = np.stack([np.asarray(vertex[a], dtype=np.float64) for a in "xyz"], axis=1)
        face = data.get("face", {})
        polygons = next((face[n] for n in ("vertex_indices", "vertex_index") if n in face), [])
    except (ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
        reason = (
            f"no {exc} element or property" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        )
        raise ValueError(f"{path} is not a readable PLY file ({reason}); {PLY_HINT}") from None
    try:
        faces = fan_triangulate(polygons)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; {PLY_HINT}") from None
    if len(vertices) == 0 or not np.isfinite(vertices).all():
        raise ValueError(f"{path} has no vertices or non-finite coordinates; {PLY_HINT}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"{path} has face indices outside its {len(vertices)} vertices; {PLY_HINT}")
    return vertices, faces


def _parse_header(text: str) -> tuple[str, list[Element]]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["ply"]:
        raise ValueError("no 'ply' magic line")
    fmt, elements = "", []
    for words in lines[1:]:
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and words[1] == "list":
            elements[-1][2].append((words[4], (_TYPES[words[2]], _TYPES[words[3]])))
        elif words[0] == "property":
            elements[-1][2].append((words[2], _TYPES[words[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unknown format {fmt!r}")
    return fmt, elements


def _read_ascii(body: bytes, elements: list[Element]) -> dict[str, dict[str, object]]:
    tokens, pos, out = body.split(), 0, {}
    for name, count, props in elements:
        if all(isinstance(kind, str) for _, kind in props):
            # fixed-width rows: one reshape instead of a Python loop over every vertex
            width = len(props)
            rows = np.asarray(tokens[pos : pos + count * width], dtype=np.float64).reshape(count, width)
            out[name] = {prop: rows[:, i] for i, (prop, _) in enumerate(props)}
            pos += count * width
            continue
        columns: dict[str, list] = {prop: [] for prop, _ in props}
        for _ in range(count):
            for prop, kind in props:
                if isinstance(kind, str):
                    columns[prop].append(float(tokens[pos]))
                    pos += 1
                else:
                    n = int(tokens[pos])
                    columns[prop].append(np.asarray(tokens[pos + 1 : pos + 1 + n], dtype=np.int64))
                    pos += 1 + n
        out[name] = columns
    return out


def _read_binary(body: bytes, elements: list[Element], order: str) -> dict[str, dict[str, object]]:
    pos, out = 0, {}
    for name, count, props in elements:
        if all(isinstance(kind, str) for _, kind in props):
            dtype = np.dtype([(prop, order + kind) for prop, kind in props])
            rows = np.frombuffer(body, dtype, count, pos)
            out[name] = {prop: rows[prop] for prop, _ in props}
            pos += count * dtype.itemsize
            continue
        if len(props) == 1 and count:
            # the usual face element: one list whose rows all have the same length -> one structured read
            prop, (count_type, item_type) = props[0]
            n = int(np.frombuffer(body, order + count_type, 1, pos)[0])
            dtype = np.dtype([("n", order + count_type), ("items", order + item_type, (n,))])
            if pos + count * dtype.itemsize <= len(body):
                rows = np.frombuffer(body, dtype, count, pos)
                if (rows["n"] == n).all():
                    out[name] = {prop: rows["items"].astype(np.int64)}
                    pos += count * dtype.itemsize
                    continue
        columns: dict[str, list] = {prop: [] for prop, _ in props}
        for _ in range(count):
            for prop, kind in props:
                if isinstance(kind, str):
                    columns[prop].append(np.frombuffer(body, order + kind, 1, pos)[0])
                    pos += np.dtype(kind).itemsize
                else:
                    n = int(np.frombuffer(body, order + kind[0], 1, pos)[0])
                    pos += np.dtype(kind[0]).itemsize
                    columns[prop].append(np.frombuffer(body, order + kind[1], n, pos).astype(np.int64))
                    pos += n * np.dtype(kind[1]).itemsize
        out[name] = columns
    return out
