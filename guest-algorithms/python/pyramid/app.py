"""Pyramid / LRC codes in Python: data in local groups, each with its own
XOR parity, plus global parities and distributed spares, rotated across legs
stripe by stripe. Maps identically to the built-in Rust pyramid
(tests/polyglot.rs proves it over random geometries).

The argument is the scheme, one character per leg (insane_striping's
syntax): a digit k is a data chunk of group k, `s` followed by a digit k is
group k's local parity, `g` a global parity, `e` a spare. The default,
"elegant", is 11111s122222s2ge: 2 groups of 5, 2 local parities, one global
parity and one spare on 14 legs. Global parity m weighs data chunk k by
g^(m k) in GF(2^8), polynomial 0x11d, generator 2.

Built by componentize-py with WASI stubbed out, so the component imports
nothing (see build.sh and docs/tutorials/python.md).
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.algorithm import Descriptor, Geometry

ELEGANT = "11111s122222s2ge"
DATA, REPLICA, PARITY, SPARE = 0, 1, 2, 3


def gf_exp2(e: int) -> int:
    """g^e for the generator g = 2 of GF(2^8) (polynomial 0x11d)."""
    v = 1
    for _ in range(e % 255):
        v <<= 1
        if v & 0x100:
            v ^= 0x11D
    return v


def words(args: str):
    return [w for w in args.replace(",", " ").split() if w]


def parse_scheme(scheme: str):
    """The cells of a scheme: ("data", group, k), ("local", group),
    ("global", m) or ("spare", ordinal)."""
    cells = []
    k = m = spares = 0
    at = 0
    while at < len(scheme):
        ch = scheme[at]
        if "1" <= ch <= "9":
            cells.append(("data", int(ch), k))
            k += 1
        elif ch == "s":
            nxt = scheme[at + 1] if at + 1 < len(scheme) else ""
            if not ("1" <= nxt <= "9"):
                raise Err(f"scheme '{scheme}': 's' at position {at} must be followed by a group digit 1-9")
            cells.append(("local", int(nxt)))
            at += 1
        elif ch == "g":
            m += 1
            cells.append(("global", m))
        elif ch == "e":
            cells.append(("spare", spares))
            spares += 1
        else:
            raise Err(f"scheme '{scheme}': unexpected '{ch}' at position {at} (digits, sN, g, e)")
        at += 1
    return cells


def coefficient_words(coefficients):
    """Four GF(2^8) coefficients per word, low byte first."""
    out = []
    for w in range(0, len(coefficients), 4):
        word = 0
        for b, coefficient in enumerate(coefficients[w : w + 4]):
            word |= coefficient << (8 * b)
        out.append(word)
    return out


class Algorithm(exports.Algorithm):
    # The instance's configuration; the host makes one instance per array.
    legs = 0
    # One template per rotation offset is not needed: every stripe is the
    # scheme rotated by s, so each cell contributes (column, role words).
    cells: list = []
    roles: list = []

    def name(self) -> str:
        return "pyramid"

    def configure(self, geometry: Geometry) -> Descriptor:
        args = words(geometry.args)
        scheme = next((w[len("scheme=") :] for w in args if w.startswith("scheme=")), None)
        if scheme is None:
            scheme = next((w for w in args if "=" not in w), ELEGANT)
        for w in args:
            key = w.split("=", 1)[0] if "=" in w else None
            if (key is not None and key != "scheme") or (key is None and w != scheme):
                raise Err(f"unknown argument '{w}' (expected one of: {scheme}, scheme=N)")
        if scheme == "elegant":
            scheme = ELEGANT
        cells = parse_scheme(scheme)
        if len(cells) != geometry.legs:
            raise Err(f"scheme '{scheme}' has {len(cells)} slots but the array has {geometry.legs} legs")
        group_of = [cell[1] for cell in cells if cell[0] == "data"]
        if not 1 <= len(group_of) <= 255:
            raise Err(f"scheme '{scheme}' must hold 1 to 255 data chunks, it holds {len(group_of)}")
        for group in range(1, 10):
            locals_ = sum(1 for cell in cells if cell == ("local", group))
            if locals_ > 1 or (locals_ == 1 and group not in group_of):
                raise Err(f"scheme '{scheme}': group {group} needs exactly one local parity s{group} and data")
        globals_ = sum(1 for cell in cells if cell[0] == "global")
        has_locals = any(cell[0] == "local" for cell in cells)
        every_group_local = all(("local", group) in cells for group in group_of)
        # The role words of each cell, parity coefficients included: they do
        # not depend on the stripe, only the leg does.
        roles = []
        ordinal = 0
        for cell in cells:
            if cell[0] == "data":
                roles.append([DATA | cell[2] << 8])
            elif cell[0] == "spare":
                roles.append([SPARE | cell[1] << 8])
            else:
                if cell[0] == "local":
                    coefficients = [1 if group == cell[1] else 0 for group in group_of]
                else:
                    coefficients = [gf_exp2(cell[1] * k) for k in range(len(group_of))]
                roles.append([PARITY | ordinal << 8] + coefficient_words(coefficients))
                ordinal += 1
        Algorithm.legs = geometry.legs
        Algorithm.roles = roles
        return Descriptor(
            data_chunks=len(group_of),
            replica_chunks=0,
            parity_chunks=ordinal,
            spare_chunks=sum(1 for cell in cells if cell[0] == "spare"),
            stripes=min(geometry.leg_chunks),
            period=geometry.legs,
            period_advance=geometry.legs,
            fault_tolerance=globals_ + (1 if has_locals and every_group_local else 0),
        )

    def map_stripes(self, first: int, count: int) -> list[int]:
        n = Algorithm.legs
        out: list[int] = []
        for s in range(first, first + count):
            for i, role in enumerate(Algorithm.roles):
                out.append((i + s) % n)
                out.append(s)
                out.extend(role)
        return out
